//! A small element tree over quick-xml's event reader, for a CIM-XML
//! `INSTANCE` document as well as a whole DSP0200 message
//! (`CIM`/`MESSAGE`/`SIMPLEREQ`/`SIMPLERSP`).
//!
//! Entities are resolved (the five predefined ones and character
//! references), CDATA is kept verbatim, whitespace-only text between elements
//! is kept but ignored by [`Element::elements`], and nesting depth is bounded
//! by [`MAX_DEPTH`]. Each element keeps its byte span in the source text, so
//! a caller can hand one element's text (an `INSTANCE` inside a message) to
//! [`Instance::from_xml`](crate::Instance::from_xml).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::XmlError;
use crate::error::CimError;

/// Maximum element nesting accepted. A reference key inside a reference key
/// inside a method parameter needs about 15; the bound keeps memory and
/// recursion finite on hostile input.
pub const MAX_DEPTH: usize = 64;

/// One element: name, attributes in document order, children, byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Element name as written (DSP0201 names are upper case).
    pub name: String,
    /// Attributes `(name, value)` in document order, values normalised and
    /// with references resolved.
    pub attrs: Vec<(String, String)>,
    /// Content in document order.
    pub children: Vec<Node>,
    /// Byte offset of the `<` of the start tag in the parsed text.
    pub start: usize,
    /// Byte offset just past the end tag (or the empty-element tag).
    pub end: usize,
}

/// Element content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Text with entities resolved; CDATA verbatim; adjacent pieces joined.
    Text(String),
}

fn offset_u64(offset: usize) -> u64 {
    u64::try_from(offset).unwrap_or(u64::MAX)
}

fn offset_usize(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl Element {
    /// `source` located at this element: [`CimError::Xml`] with the byte
    /// offset of its start tag.
    pub fn err(&self, source: XmlError) -> CimError {
        CimError::Xml {
            offset: offset_u64(self.start),
            source,
        }
    }

    /// Attribute `name` (exact match; DSP0201 attribute names are upper case).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Required attribute `name`.
    ///
    /// # Errors
    /// [`XmlError::MissingAttribute`] naming element and attribute.
    pub fn required(&self, name: &'static str) -> Result<&str, CimError> {
        self.attr(name).ok_or_else(|| {
            self.err(XmlError::MissingAttribute {
                element: self.name.clone(),
                attribute: name,
            })
        })
    }

    /// Child elements in document order.
    ///
    /// # Errors
    /// [`XmlError::UnexpectedText`] when non-whitespace text stands between them.
    pub fn elements(&self) -> Result<Vec<&Element>, CimError> {
        let mut out = Vec::new();
        for n in &self.children {
            match n {
                Node::Element(e) => out.push(e),
                Node::Text(t) if t.trim().is_empty() => {}
                Node::Text(_) => {
                    return Err(self.err(XmlError::UnexpectedText {
                        element: self.name.clone(),
                    }));
                }
            }
        }
        Ok(out)
    }

    /// The only child element, which must be named `name`.
    ///
    /// # Errors
    /// [`XmlError::MissingElement`] when there is none,
    /// [`XmlError::UnexpectedElement`] for another or a second element,
    /// [`XmlError::UnexpectedText`] for text.
    pub fn only_child(&self, name: &'static str) -> Result<&Element, CimError> {
        match self.elements()?.as_slice() {
            [one] if one.name == name => Ok(one),
            [] => Err(self.missing(name)),
            [one] => Err(self.unexpected(one)),
            [_, extra, ..] => Err(self.unexpected(extra)),
        }
    }

    /// Concatenated text content.
    ///
    /// # Errors
    /// [`XmlError::UnexpectedElement`] for a child element.
    pub fn text(&self) -> Result<String, CimError> {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) => return Err(self.unexpected(e)),
            }
        }
        Ok(s)
    }

    /// [`XmlError::UnexpectedElement`] for `child` in this element, located at `child`.
    pub fn unexpected(&self, child: &Element) -> CimError {
        child.err(XmlError::UnexpectedElement {
            element: child.name.clone(),
            parent: self.name.clone(),
        })
    }

    /// [`XmlError::MissingElement`]: this element lacks a `child`.
    pub fn missing(&self, child: &'static str) -> CimError {
        self.err(XmlError::MissingElement {
            element: self.name.clone(),
            child,
        })
    }

    /// The element's source text, start tag to end tag, out of `text` (the
    /// document this element was parsed from); `None` when `text` is
    /// another, shorter document.
    pub fn source<'a>(&self, text: &'a str) -> Option<&'a str> {
        text.get(self.start..self.end)
    }
}

fn syntax(offset: u64, e: impl std::fmt::Display) -> CimError {
    CimError::Xml {
        offset,
        source: XmlError::Syntax(e.to_string()),
    }
}

fn start_element(
    reader: &Reader<&[u8]>,
    e: &BytesStart<'_>,
    start: usize,
) -> Result<Element, CimError> {
    let name = e.name().as_ref().to_owned();
    let at = offset_u64(start);
    let mut attrs: Vec<(String, String)> = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| syntax(reader.buffer_position(), err))?;
        let key = a.key.as_ref().to_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| syntax(at, err))?
            .into_owned();
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(CimError::Xml {
                offset: at,
                source: XmlError::DuplicateAttribute {
                    element: name,
                    attribute: key,
                },
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

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

/// Parses `text` into its single root element.
///
/// # Errors
/// [`CimError::Xml`] with the byte offset for any well-formedness problem:
/// [`XmlError::Syntax`] (unclosed or mismatched tags, bad attribute syntax),
/// [`XmlError::Entity`], [`XmlError::DuplicateAttribute`],
/// [`XmlError::TrailingContent`] (a second root or text after it),
/// [`XmlError::TextOutsideRoot`], [`XmlError::Unclosed`],
/// [`XmlError::TooDeep`] (nesting deeper than [`MAX_DEPTH`]),
/// [`XmlError::NoElement`].
pub fn parse(text: &str) -> Result<Element, CimError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let offset = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| syntax(reader.error_position(), e))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(CimError::Xml {
                    offset,
                    source: XmlError::TrailingContent,
                });
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(CimError::Xml {
                        offset,
                        source: XmlError::TooDeep { max: MAX_DEPTH },
                    });
                }
                stack.push(start_element(&reader, &e, offset_usize(offset))?);
            }
            Event::Empty(e) => {
                let mut el = start_element(&reader, &e, offset_usize(offset))?;
                el.end = offset_usize(reader.buffer_position());
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(syntax(offset, "end tag without start tag"));
                };
                el.end = offset_usize(reader.buffer_position());
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, root.is_some(), &content, offset)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content().into_owned();
                push_text(&mut stack, root.is_some(), &content, offset)?;
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => predefined_entity(&r),
                    Err(_) => None,
                };
                let Some(ch) = ch else {
                    return Err(CimError::Xml {
                        offset,
                        source: XmlError::Entity(r.to_string()),
                    });
                };
                push_text(
                    &mut stack,
                    root.is_some(),
                    ch.encode_utf8(&mut [0; 4]),
                    offset,
                )?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(CimError::Xml {
            offset: reader.buffer_position(),
            source: XmlError::Unclosed {
                element: open.name.clone(),
            },
        });
    }
    root.ok_or(CimError::Xml {
        offset: 0,
        source: XmlError::NoElement,
    })
}

fn push_text(
    stack: &mut [Element],
    after_root: bool,
    content: &str,
    offset: u64,
) -> Result<(), CimError> {
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
        None => Err(CimError::Xml {
            offset,
            source: if after_root {
                XmlError::TrailingContent
            } else {
                XmlError::TextOutsideRoot
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> XmlError {
        match parse(text) {
            Err(CimError::Xml { source, .. }) => source,
            other => panic!("expected an XML error, got {other:?}"),
        }
    }

    #[test]
    fn spans_cover_start_tag_to_end_tag() {
        let text = r#"<A><B X="1">t</B><C/></A>"#;

        let root = parse(text).expect("parse");
        let children = root.elements().expect("elements");

        assert_eq!(root.source(text), Some(text));
        assert_eq!(
            children.iter().map(|e| e.source(text)).collect::<Vec<_>>(),
            vec![Some(r#"<B X="1">t</B>"#), Some("<C/>")]
        );
    }

    #[test]
    fn text_before_the_root_is_text_outside_root() {
        assert_eq!(rule("junk<A/>"), XmlError::TextOutsideRoot);
    }

    #[test]
    fn only_child_names_the_missing_or_unexpected_element() {
        let empty = parse("<A/>").expect("parse");
        let other = parse("<A><C/></A>").expect("parse");

        assert_eq!(
            empty.only_child("B"),
            Err(empty.err(XmlError::MissingElement {
                element: "A".into(),
                child: "B"
            }))
        );
        assert!(matches!(
            other.only_child("B"),
            Err(CimError::Xml {
                offset: 3,
                source: XmlError::UnexpectedElement { .. }
            })
        ));
    }
}
