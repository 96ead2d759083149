//! WMI/CIM object paths (WMI "Describing the Location of a WMI Object";
//! MS-WMI 2.2.2 object-path ABNF).
//!
//! Forms accepted:
//! * full `\\server\namespace:Class.Key="v",Key2="v"`;
//! * WMI monikers with `/` separators, `//server/root/virtualization:Class.Key="v"`
//!   (os-win, nova); the namespace is normalised to `\` separators;
//! * namespace-relative `root\virtualization\v2:Class.Key="v"`;
//! * relative `Class.Key="v"`;
//! * singleton `Class=@`.
//!
//! Inside a quoted key value `\\` stands for `\` and `\"` for `"`; any other
//! backslash escape is rejected. Unquoted values (numbers, `TRUE`) are accepted
//! and kept as text; [`ObjectPath`]'s `Display` always writes values quoted.

use std::fmt;
use std::str::FromStr;

/// Why an object path was rejected. Offsets are byte offsets into the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The text is empty.
    #[error("object path is empty")]
    Empty,
    /// `\\` (or `//`) is not followed by a server name.
    #[error("object path has an empty server name after the leading separator")]
    EmptyServer,
    /// A `\\server\` prefix is not followed by `namespace:`.
    #[error("object path has no ':' after the namespace that starts at byte {offset}")]
    MissingNamespace {
        /// Byte offset of the namespace.
        offset: usize,
    },
    /// The class name is empty or holds characters other than letters, digits, `_`.
    #[error("invalid class name at byte {offset}")]
    BadClassName {
        /// Byte offset of the class name.
        offset: usize,
    },
    /// The path names a class but no instance (no key bindings and no `=@`).
    #[error("object path names class {class} but no instance (no keys and no '=@')")]
    MissingKeys {
        /// The class.
        class: String,
    },
    /// A key name is empty or malformed.
    #[error("invalid key name at byte {offset}")]
    BadKeyName {
        /// Byte offset.
        offset: usize,
    },
    /// `=` expected after a key name.
    #[error("expected '=' at byte {offset}")]
    ExpectedEquals {
        /// Byte offset.
        offset: usize,
    },
    /// A quoted value has no closing `"`.
    #[error("unterminated quoted key value starting at byte {offset}")]
    UnterminatedValue {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A backslash inside a quoted value is followed by something other than `\` or `"`.
    #[error("invalid escape '\\{found}' at byte {offset}; only \\\\ and \\\" are allowed")]
    BadEscape {
        /// Byte offset of the backslash.
        offset: usize,
        /// The character after it.
        found: char,
    },
    /// An unquoted value is empty.
    #[error("empty key value at byte {offset}")]
    EmptyValue {
        /// Byte offset.
        offset: usize,
    },
    /// Something follows a value other than `,` or the end.
    #[error("unexpected character {found:?} at byte {offset}")]
    Unexpected {
        /// Byte offset.
        offset: usize,
        /// The character.
        found: char,
    },
    /// The same key appears twice (names compare case-insensitively).
    #[error("duplicate key {name}")]
    DuplicateKey {
        /// The key name.
        name: String,
    },
}

/// A CIM instance path: optional server and namespace, class, key bindings.
///
/// An empty `keys` list is a singleton (`Class=@`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectPath {
    /// Host name (`.` for the local host in WMI).
    pub server: Option<String>,
    /// Namespace with `\` separators, e.g. `root\virtualization\v2`.
    pub namespace: Option<String>,
    /// Class name, e.g. `Msvm_VirtualSystemReferencePoint`.
    pub class_name: String,
    /// Key bindings in path order: (name, value); values unescaped.
    pub keys: Vec<(String, String)>,
}

impl ObjectPath {
    /// A relative path of `class_name` with no keys (a singleton until keys are added).
    pub fn new(class_name: &str) -> ObjectPath {
        ObjectPath {
            server: None,
            namespace: None,
            class_name: class_name.to_owned(),
            keys: Vec::new(),
        }
    }

    /// Builder: adds a key binding.
    pub fn with_key(mut self, name: &str, value: &str) -> ObjectPath {
        self.keys.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Builder: sets server and namespace (`\` or `/` separators accepted).
    pub fn with_location(mut self, server: &str, namespace: &str) -> ObjectPath {
        self.server = Some(server.to_owned());
        self.namespace = Some(namespace.replace('/', "\\"));
        self
    }

    /// The value of key `name` (compared case-insensitively, as CIM names are).
    pub fn key(&self, name: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when class and keys match `other` ignoring server, namespace and
    /// the case of class and key names (key values compare exactly).
    pub fn same_instance(&self, other: &ObjectPath) -> bool {
        self.class_name.eq_ignore_ascii_case(&other.class_name)
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .all(|(k, v)| other.key(k) == Some(v.as_str()))
    }

    /// The path without server and namespace (`Class.Key="v"`), as WMI `__RELPATH`.
    pub fn relative(&self) -> ObjectPath {
        ObjectPath {
            server: None,
            namespace: None,
            class_name: self.class_name.clone(),
            keys: self.keys.clone(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_name_char) && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// A cursor over the path text.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !pred(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }
}

impl FromStr for ObjectPath {
    type Err = PathError;

    /// Parses any form listed in the module docs.
    ///
    /// # Errors
    /// [`PathError`] naming the byte offset of the problem.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(PathError::Empty);
        }
        let mut cur = Cursor { text, pos: 0 };
        let mut server = None;
        let mut namespace = None;

        if text.starts_with("\\\\") || text.starts_with("//") {
            cur.pos = 2;
            let s = cur.take_while(|c| c != '\\' && c != '/');
            if s.is_empty() {
                return Err(PathError::EmptyServer);
            }
            server = Some(s.to_owned());
            cur.bump();
            let ns_start = cur.pos;
            let ns = cur.take_while(|c| c != ':' && c != '"' && c != '=');
            if cur.peek() != Some(':') || ns.is_empty() {
                return Err(PathError::MissingNamespace { offset: ns_start });
            }
            namespace = Some(ns.replace('/', "\\"));
            cur.bump();
        } else {
            // A namespace prefix is a ':' before the first '.', '=' or '"'.
            let head_end = text.find(['.', '=', '"']).unwrap_or(text.len());
            if let Some(colon) = text.get(..head_end).and_then(|h| h.find(':')) {
                let ns = text.get(..colon).unwrap_or("");
                if ns.is_empty() {
                    return Err(PathError::MissingNamespace { offset: 0 });
                }
                namespace = Some(ns.replace('/', "\\"));
                cur.pos = colon + 1;
            }
        }

        let class_start = cur.pos;
        let class_name = cur.take_while(is_name_char).to_owned();
        if !is_valid_name(&class_name) {
            return Err(PathError::BadClassName {
                offset: class_start,
            });
        }
        let mut path = ObjectPath {
            server,
            namespace,
            class_name,
            keys: Vec::new(),
        };
        match cur.bump() {
            None => {
                return Err(PathError::MissingKeys {
                    class: path.class_name,
                });
            }
            Some('=') => {
                let at = cur.pos;
                return match (cur.bump(), cur.peek()) {
                    (Some('@'), None) => Ok(path),
                    (Some('@'), Some(found)) => Err(PathError::Unexpected {
                        offset: at + 1,
                        found,
                    }),
                    _ => Err(PathError::Unexpected {
                        offset: at,
                        found: text
                            .get(at..)
                            .and_then(|s| s.chars().next())
                            .unwrap_or('\0'),
                    }),
                };
            }
            Some('.') => {}
            Some(found) => {
                return Err(PathError::Unexpected {
                    offset: cur.pos - found.len_utf8(),
                    found,
                });
            }
        }
        loop {
            let name_start = cur.pos;
            let name = cur.take_while(is_name_char).to_owned();
            if !is_valid_name(&name) {
                return Err(PathError::BadKeyName { offset: name_start });
            }
            if cur.bump() != Some('=') {
                return Err(PathError::ExpectedEquals { offset: cur.pos });
            }
            let value = parse_value(&mut cur)?;
            if path.key(&name).is_some() {
                return Err(PathError::DuplicateKey { name });
            }
            path.keys.push((name, value));
            match cur.bump() {
                None => return Ok(path),
                Some(',') => continue,
                Some(found) => {
                    return Err(PathError::Unexpected {
                        offset: cur.pos - found.len_utf8(),
                        found,
                    });
                }
            }
        }
    }
}

fn parse_value(cur: &mut Cursor<'_>) -> Result<String, PathError> {
    let start = cur.pos;
    if cur.peek() != Some('"') {
        let v = cur.take_while(|c| c != ',');
        if v.is_empty() {
            return Err(PathError::EmptyValue { offset: start });
        }
        return Ok(v.to_owned());
    }
    cur.bump();
    let mut value = String::new();
    loop {
        let at = cur.pos;
        match cur.bump() {
            None => return Err(PathError::UnterminatedValue { offset: start }),
            Some('"') => return Ok(value),
            Some('\\') => match cur.bump() {
                Some(c @ ('\\' | '"')) => value.push(c),
                Some(found) => return Err(PathError::BadEscape { offset: at, found }),
                None => return Err(PathError::UnterminatedValue { offset: start }),
            },
            Some(c) => value.push(c),
        }
    }
}

impl fmt::Display for ObjectPath {
    /// Writes `\\server\namespace:Class.Key="v"` (server and namespace only
    /// when both are set; namespace alone gives `namespace:Class…`), or
    /// `Class=@` for a singleton. Values are quoted with `\` and `"` escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.server, &self.namespace) {
            (Some(s), Some(ns)) => write!(f, "\\\\{s}\\{ns}:")?,
            (None, Some(ns)) => write!(f, "{ns}:")?,
            _ => {}
        }
        f.write_str(&self.class_name)?;
        if self.keys.is_empty() {
            return f.write_str("=@");
        }
        for (i, (k, v)) in self.keys.iter().enumerate() {
            f.write_str(if i == 0 { "." } else { "," })?;
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                if c == '\\' || c == '"' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

impl serde::Serialize for ObjectPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_path_with_two_keys_parses() {
        let text = r#"\\HV12OSDEMO1\root\virtualization:Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="BAA72B74-BBD6-4F0B-88B0-4E3C8242C817""#;

        let p: ObjectPath = text.parse().unwrap();

        assert_eq!(p.server.as_deref(), Some("HV12OSDEMO1"));
        assert_eq!(p.namespace.as_deref(), Some(r"root\virtualization"));
        assert_eq!(p.class_name, "Msvm_ComputerSystem");
        assert_eq!(p.key("name"), Some("BAA72B74-BBD6-4F0B-88B0-4E3C8242C817"));
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn escaped_backslash_in_value_is_unescaped_and_round_trips() {
        let text = r#"Msvm_MemorySettingData.InstanceID="Microsoft:379FAC72-4830-49B0-B813-0AE089F1CA08\\4764334d-e001-4176-82ee-5594ec9b530e""#;

        let p: ObjectPath = text.parse().unwrap();

        assert_eq!(
            p.key("InstanceID"),
            Some(
                r"Microsoft:379FAC72-4830-49B0-B813-0AE089F1CA08\4764334d-e001-4176-82ee-5594ec9b530e"
            )
        );
        assert_eq!(p.server, None);
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn escaped_quote_in_value_round_trips() {
        let text = r#"C.K="say \"hi\"""#;

        let p: ObjectPath = text.parse().unwrap();

        assert_eq!(p.key("K"), Some(r#"say "hi""#));
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn slash_moniker_is_accepted_and_normalised() {
        let text = r#"//HV12OSDEMO1/root/virtualization:Msvm_ConcreteJob.InstanceID="407811B0-8789-4CDB-9DA8-3A35C6BD96C7""#;

        let p: ObjectPath = text.parse().unwrap();

        assert_eq!(p.server.as_deref(), Some("HV12OSDEMO1"));
        assert_eq!(p.namespace.as_deref(), Some(r"root\virtualization"));
        assert_eq!(
            p.to_string(),
            r#"\\HV12OSDEMO1\root\virtualization:Msvm_ConcreteJob.InstanceID="407811B0-8789-4CDB-9DA8-3A35C6BD96C7""#
        );
    }

    #[test]
    fn local_server_dot_v2_namespace_parses() {
        let p: ObjectPath = r#"\\.\root\virtualization\v2:Msvm_ConcreteJob.InstanceID="job""#
            .parse()
            .unwrap();

        assert_eq!(p.server.as_deref(), Some("."));
        assert_eq!(p.namespace.as_deref(), Some(r"root\virtualization\v2"));
    }

    #[test]
    fn singleton_round_trips() {
        let p: ObjectPath = "Msvm_Singleton=@".parse().unwrap();

        assert!(p.keys.is_empty());
        assert_eq!(p.to_string(), "Msvm_Singleton=@");
    }

    #[test]
    fn namespace_relative_path_parses() {
        let p: ObjectPath = r#"root\virtualization\v2:C.K="a:b""#.parse().unwrap();

        assert_eq!(p.namespace.as_deref(), Some(r"root\virtualization\v2"));
        assert_eq!(p.key("K"), Some("a:b"));
    }

    #[test]
    fn unquoted_numeric_key_is_kept_as_text() {
        let p: ObjectPath = "C.Id=42,Flag=TRUE".parse().unwrap();

        assert_eq!(p.key("Id"), Some("42"));
        assert_eq!(p.key("Flag"), Some("TRUE"));
    }

    #[test]
    fn class_without_keys_is_missing_keys() {
        let err = "Msvm_ComputerSystem".parse::<ObjectPath>().unwrap_err();

        assert_eq!(
            err,
            PathError::MissingKeys {
                class: "Msvm_ComputerSystem".into()
            }
        );
    }

    #[test]
    fn unterminated_value_names_opening_quote() {
        let err = r#"C.K="abc"#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::UnterminatedValue { offset: 4 });
    }

    #[test]
    fn unknown_escape_is_rejected_with_offset() {
        let err = r#"C.K="a\nb""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(
            err,
            PathError::BadEscape {
                offset: 6,
                found: 'n'
            }
        );
    }

    #[test]
    fn empty_server_is_rejected() {
        let err = r#"\\\root:C.K="v""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::EmptyServer);
    }

    #[test]
    fn server_without_namespace_colon_is_rejected() {
        let err = r#"\\host\root.K="v""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::MissingNamespace { offset: 7 });
    }

    #[test]
    fn bad_class_name_is_rejected() {
        let err = r#"9Class.K="v""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::BadClassName { offset: 0 });
    }

    #[test]
    fn missing_equals_is_rejected() {
        let err = r#"C.K"v""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::ExpectedEquals { offset: 4 });
    }

    #[test]
    fn garbage_after_value_is_rejected() {
        let err = r#"C.K="v"x"#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(
            err,
            PathError::Unexpected {
                offset: 7,
                found: 'x'
            }
        );
    }

    #[test]
    fn duplicate_key_is_rejected() {
        let err = r#"C.K="1",k="2""#.parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::DuplicateKey { name: "k".into() });
    }

    #[test]
    fn empty_text_is_rejected() {
        assert_eq!("  ".parse::<ObjectPath>().unwrap_err(), PathError::Empty);
    }

    #[test]
    fn empty_unquoted_value_is_rejected() {
        let err = "C.K=,L=1".parse::<ObjectPath>().unwrap_err();

        assert_eq!(err, PathError::EmptyValue { offset: 4 });
    }

    #[test]
    fn singleton_with_trailing_text_is_rejected() {
        let err = "C=@x".parse::<ObjectPath>().unwrap_err();

        assert_eq!(
            err,
            PathError::Unexpected {
                offset: 3,
                found: 'x'
            }
        );
    }

    proptest! {
        #[test]
        fn formatted_paths_parse_back(
            server in proptest::option::of("[A-Za-z0-9.-]{1,12}"),
            class in "[A-Za-z_][A-Za-z0-9_]{0,20}",
            keys in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,8}", "\\PC{0,20}"), 0..4),
        ) {
            let mut path = ObjectPath::new(&class);
            if let Some(s) = &server {
                path = path.with_location(s, r"root\virtualization\v2");
            }
            for (i, (k, v)) in keys.iter().enumerate() {
                path = path.with_key(&format!("{k}{i}"), v);
            }

            let back: ObjectPath = path.to_string().parse().unwrap();

            prop_assert_eq!(back, path);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<ObjectPath>();
        }
    }
}
