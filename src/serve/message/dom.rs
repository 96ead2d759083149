//! A small element tree over quick-xml's event reader, for whole CIM-XML
//! messages (DSP0201 `CIM`/`MESSAGE`/`SIMPLEREQ`/`SIMPLERSP`).
//!
//! Each element keeps its byte span in the source text, so an `INSTANCE`
//! inside a message can be handed as text to
//! [`Instance::from_xml`](refpoint_cim::Instance::from_xml), which owns the
//! DSP0201 instance rules. Entities are resolved (the five predefined ones
//! and character references), whitespace-only text between elements is kept
//! but ignored by [`Element::elements`], and nesting depth is bounded.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::error::MessageError;

/// Maximum element nesting accepted in a message (a reference key inside a
/// reference key inside a parameter needs about 15).
pub(crate) const MAX_DEPTH: usize = 64;

/// One element: name, attributes in document order, children, byte span.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Byte offset of `<` of the start tag.
    pub start: usize,
    /// Byte offset just past the end tag (or the empty-element tag).
    pub end: usize,
}

/// Element content.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Element(Element),
    /// Text with entities resolved; CDATA verbatim.
    Text(String),
}

impl Element {
    /// A "not valid" error located at this element.
    pub fn invalid(&self, detail: impl Into<String>) -> MessageError {
        MessageError::NotValid {
            offset: self.start,
            detail: detail.into(),
        }
    }

    /// Attribute `name`, exact match (DSP0201 attribute names are upper case).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Required attribute `name`.
    pub fn required(&self, name: &str) -> Result<&str, MessageError> {
        self.attr(name)
            .ok_or_else(|| self.invalid(format!("element {} lacks attribute {name}", self.name)))
    }

    /// Child elements; non-whitespace text between them is an error.
    pub fn elements(&self) -> Result<Vec<&Element>, MessageError> {
        let mut out = Vec::new();
        for n in &self.children {
            match n {
                Node::Element(e) => out.push(e),
                Node::Text(t) if t.trim().is_empty() => {}
                Node::Text(_) => {
                    return Err(self.invalid(format!("text is not allowed in {}", self.name)));
                }
            }
        }
        Ok(out)
    }

    /// The only child element, which must be named `name`.
    pub fn only_child(&self, name: &str) -> Result<&Element, MessageError> {
        let children = self.elements()?;
        match children.as_slice() {
            [one] if one.name == name => Ok(one),
            [one] => Err(self.unexpected(one)),
            [] => Err(self.invalid(format!("element {} lacks child {name}", self.name))),
            [_, extra, ..] => Err(self.unexpected(extra)),
        }
    }

    /// Concatenated text content; a child element is an error.
    pub fn text(&self) -> Result<String, MessageError> {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) => return Err(self.unexpected(e)),
            }
        }
        Ok(s)
    }

    /// "element X is not allowed in Y".
    pub fn unexpected(&self, child: &Element) -> MessageError {
        child.invalid(format!(
            "element {} is not allowed in {}",
            child.name, self.name
        ))
    }

    /// The element's source text (for handing an `INSTANCE` to the instance parser).
    pub fn source<'a>(&self, text: &'a str) -> Option<&'a str> {
        text.get(self.start..self.end)
    }
}

fn syntax(offset: u64, e: impl std::fmt::Display) -> MessageError {
    MessageError::NotWellFormed {
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
        detail: e.to_string(),
    }
}

fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

fn start_element(
    reader: &Reader<&[u8]>,
    e: &BytesStart<'_>,
    start: usize,
) -> Result<Element, MessageError> {
    let name = e.name().as_ref().to_owned();
    let mut attrs: Vec<(String, String)> = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| syntax(reader.buffer_position(), err))?;
        let key = a.key.as_ref().to_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| syntax(reader.buffer_position(), err))?
            .into_owned();
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(MessageError::NotWellFormed {
                offset: start,
                detail: format!("element {name} repeats attribute {key}"),
            });
        }
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        start,
        end: start,
    })
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

fn push_text(stack: &mut [Element], content: &str, offset: usize) -> Result<(), MessageError> {
    match stack.last_mut() {
        Some(parent) => {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(content);
            } else {
                parent.children.push(Node::Text(content.to_owned()));
            }
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None => Err(MessageError::NotWellFormed {
            offset,
            detail: "text outside the root element".to_owned(),
        }),
    }
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

/// Parses `text` into its single root element.
///
/// # Errors
/// [`MessageError::NotWellFormed`] with the byte offset for any
/// well-formedness problem (unclosed or mismatched tags, bad entity, a second
/// root, text outside the root, nesting deeper than [`MAX_DEPTH`]).
pub(crate) fn parse(text: &str) -> Result<Element, MessageError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let offset = position(&reader);
        let event = reader
            .read_event()
            .map_err(|e| syntax(reader.error_position(), e))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(MessageError::NotWellFormed {
                    offset,
                    detail: "content after the root element".to_owned(),
                });
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(MessageError::NotWellFormed {
                        offset,
                        detail: format!("elements nested deeper than {MAX_DEPTH}"),
                    });
                }
                stack.push(start_element(&reader, &e, offset)?);
            }
            Event::Empty(e) => {
                let mut el = start_element(&reader, &e, offset)?;
                el.end = position(&reader);
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(syntax(
                        reader.buffer_position(),
                        "end tag without start tag",
                    ));
                };
                el.end = position(&reader);
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content, offset)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content().into_owned();
                push_text(&mut stack, &content, offset)?;
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => predefined_entity(r.as_ref()),
                    Err(_) => None,
                };
                let Some(ch) = ch else {
                    return Err(MessageError::NotWellFormed {
                        offset,
                        detail: format!("unknown or invalid entity reference &{};", r.as_ref()),
                    });
                };
                push_text(&mut stack, ch.encode_utf8(&mut [0; 4]), offset)?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(MessageError::NotWellFormed {
            offset: text.len(),
            detail: format!("document ends inside element {}", open.name),
        });
    }
    root.ok_or(MessageError::NotWellFormed {
        offset: 0,
        detail: "document holds no element".to_owned(),
    })
}
