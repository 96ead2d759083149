//! Escaping text and attribute values for CIM-XML output.

use std::fmt::Write as _;

/// Appends `text` to `out` XML-escaped: `&`, `<`, `>` always, `"` when
/// `attribute` (values are written in double quotes). C0 controls become
/// character references (`&#13;`), except `\n` and `\t` in element text, so
/// that `\r`, and `\n`/`\t` in attributes, survive XML's normalisation.
pub fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' | '\t' if !attribute => out.push(c),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Appends one attribute, ` NAME="value"`, with `value` escaped by
/// [`escape_into`].
pub fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value, true);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_escapes_quotes_and_whitespace_controls() {
        let mut out = String::new();

        attr(&mut out, "NAME", "a\"<b>&\n\t\r");

        assert_eq!(out, " NAME=\"a&quot;&lt;b&gt;&amp;&#10;&#9;&#13;\"");
    }

    #[test]
    fn text_keeps_quotes_newlines_and_tabs() {
        let mut out = String::new();

        escape_into(&mut out, "\"x\"\n\t\r\u{1}", false);

        assert_eq!(out, "\"x\"\n\t&#13;&#1;");
    }
}
