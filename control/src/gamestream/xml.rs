//! The XML documents nvhttp answers with: `<root status_code="200">…</root>`.
//!
//! Moonlight decides success from the `status_code` attribute, never from the HTTP status
//! (docs/gamestream-protocol-notes.md "nvhttp transport"), so errors are XML too. The writer
//! escapes every text and attribute value; elements are flat (`<App>` of `/applist` nests one level
//! with [`Xml::open`]).
//!
//! ```
//! use punktfunk_control::gamestream::xml::Xml;
//! let doc = Xml::root(400, Some("Bad <pin>")).elem("paired", 0).finish();
//! assert_eq!(
//!     doc,
//!     "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
//!      <root status_code=\"400\" status_message=\"Bad &lt;pin&gt;\"><paired>0</paired></root>"
//! );
//! ```

use std::fmt::{Display, Write as _};

/// An XML document under construction.
#[derive(Debug, Clone)]
pub struct Xml {
    out: String,
    open: Vec<&'static str>,
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Xml {
    /// `<root status_code="…" [status_message="…"]>`.
    pub fn root(status_code: u16, status_message: Option<&str>) -> Self {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        let _ = write!(out, "<root status_code=\"{status_code}\"");
        if let Some(m) = status_message {
            let _ = write!(out, " status_message=\"{}\"", escape(m));
        }
        out.push('>');
        Self {
            out,
            open: vec!["root"],
        }
    }

    /// `<name>value</name>`, value escaped.
    pub fn elem(mut self, name: &'static str, value: impl Display) -> Self {
        let _ = write!(self.out, "<{name}>{}</{name}>", escape(&value.to_string()));
        self
    }

    /// Opens `<name>`; close it with [`Xml::close`].
    pub fn open(mut self, name: &'static str) -> Self {
        let _ = write!(self.out, "<{name}>");
        self.open.push(name);
        self
    }

    /// Closes the innermost open element.
    pub fn close(mut self) -> Self {
        if self.open.len() > 1
            && let Some(name) = self.open.pop()
        {
            let _ = write!(self.out, "</{name}>");
        }
        self
    }

    /// Closes every open element and returns the text.
    pub fn finish(mut self) -> String {
        while let Some(name) = self.open.pop() {
            let _ = write!(self.out, "</{name}>");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_escapes() {
        let doc = Xml::root(200, None)
            .open("App")
            .elem("AppTitle", "Tom & Jerry's \"game\"\u{1}")
            .elem("ID", 2)
            .close()
            .finish();
        assert!(doc.ends_with(
            "<root status_code=\"200\"><App><AppTitle>Tom &amp; Jerry&apos;s &quot;game&quot;</AppTitle><ID>2</ID></App></root>"
        ));
    }
}
