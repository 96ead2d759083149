//! A minimal element tree built with quick-xml's event reader.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::XmlError;
use crate::error::CimError;

/// Maximum element nesting accepted (the DTD needs about 10 for a reference
/// key inside a reference key; this bounds memory and recursion on hostile input).
pub(crate) const MAX_DEPTH: usize = 64;

/// One element: name, attributes in document order, children, byte offset.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub offset: u64,
}

/// Element content.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Element(Element),
    /// Text (entities resolved; CDATA included verbatim).
    Text(String),
}

impl Element {
    /// An error for this element.
    pub fn err(&self, source: XmlError) -> CimError {
        CimError::Xml {
            offset: self.offset,
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
    pub fn required(&self, name: &'static str) -> Result<&str, CimError> {
        self.attr(name).ok_or_else(|| {
            self.err(XmlError::MissingAttribute {
                element: self.name.clone(),
                attribute: name,
            })
        })
    }

    /// Child elements; non-whitespace text is an error.
    pub fn elements(&self) -> Result<impl Iterator<Item = &Element>, CimError> {
        for n in &self.children {
            if let Node::Text(t) = n
                && !t.trim().is_empty()
            {
                return Err(self.err(XmlError::UnexpectedText {
                    element: self.name.clone(),
                }));
            }
        }
        Ok(self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }))
    }

    /// Concatenated text; child elements are an error.
    pub fn text(&self) -> Result<String, CimError> {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) => {
                    return Err(e.err(XmlError::UnexpectedElement {
                        element: e.name.clone(),
                        parent: self.name.clone(),
                    }));
                }
            }
        }
        Ok(s)
    }

    /// An "element X not allowed here" error for child `child`.
    pub fn unexpected(&self, child: &Element) -> CimError {
        child.err(XmlError::UnexpectedElement {
            element: child.name.clone(),
            parent: self.name.clone(),
        })
    }
}

fn syntax(offset: u64, e: impl std::fmt::Display) -> CimError {
    CimError::Xml {
        offset,
        source: XmlError::Syntax(e.to_string()),
    }
}

fn start(reader: &Reader<&[u8]>, e: &BytesStart<'_>, offset: u64) -> Result<Element, CimError> {
    let name = e.name().as_ref().to_owned();
    let mut attrs: Vec<(String, String)> = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| syntax(reader.buffer_position(), err))?;
        let key = a.key.as_ref().to_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| syntax(offset, err))?
            .into_owned();
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(CimError::Xml {
                offset,
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
        offset,
    })
}

fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

/// Parses `text` into its single root element.
///
/// # Errors
/// [`CimError::Xml`] with the byte offset for any well-formedness problem.
pub(crate) fn parse(text: &str) -> Result<Element, CimError> {
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
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
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
                stack.push(start(&reader, &e, offset)?);
            }
            Event::Empty(e) => {
                let el = start(&reader, &e, offset)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    return Err(syntax(offset, "end tag without start tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
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
                    Ok(Some(c)) => c,
                    Ok(None) => resolve_entity(&r).ok_or_else(|| CimError::Xml {
                        offset,
                        source: XmlError::Entity(r.to_string()),
                    })?,
                    Err(_) => {
                        return Err(CimError::Xml {
                            offset,
                            source: XmlError::Entity(r.to_string()),
                        });
                    }
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
                XmlError::UnexpectedText {
                    element: "document".to_owned(),
                }
            },
        }),
    }
}
