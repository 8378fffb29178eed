//! Renders a [`Doc`] as one self-contained HTML file (`report.html`): styles in
//! the head and every figure inlined as SVG, so the file can be mailed or
//! archived alone and still shows everything.

use super::document::{Block, Doc};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.7em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em;border-radius:3px}\
pre{background:#f4f4f4;padding:.7em;overflow-x:auto}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}\
figcaption{font-size:.9em;color:#555}";

/// The document as an HTML page.
pub fn render(doc: &Doc) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(&doc.title)));
    out.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    out.push_str(&format!("<h1>{}</h1>\n", escape(&doc.title)));
    for block in &doc.blocks {
        match block {
            Block::Heading(level, text) => {
                out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            }
            Block::Para(text) => out.push_str(&format!("<p>{}</p>\n", inline(text))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    out.push_str(&format!("<li>{}</li>\n", inline(item)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<tr>");
                for h in header {
                    out.push_str(&format!("<th>{}</th>", inline(h)));
                }
                out.push_str("</tr>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Figure {
                stem, caption, svg, ..
            } => {
                out.push_str(&format!("<figure id=\"{}\">\n", escape(stem)));
                out.push_str(strip_xml_declaration(svg));
                out.push_str(&format!(
                    "\n<figcaption>{} (<code>figures/{}.svg</code>, <code>.png</code>)</figcaption>\n</figure>\n",
                    inline(caption),
                    escape(stem)
                ));
            }
            Block::Code(code) => {
                out.push_str(&format!("<pre><code>{}</code></pre>\n", escape(code)));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// An SVG document may open with `<?xml ...?>`, which is not valid inside HTML.
fn strip_xml_declaration(svg: &str) -> &str {
    let s = svg.trim_start();
    match s.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start())
            .unwrap_or(s),
        None => s,
    }
}

/// Escapes text and turns `code spans` into `<code>` elements.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", escape(part)));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_code_spans_marked() {
        assert_eq!(
            inline("a < b and `x[d=1]` & c"),
            "a &lt; b and <code>x[d=1]</code> &amp; c"
        );
    }

    #[test]
    fn figures_are_inlined_without_xml_declaration() {
        let doc = Doc {
            title: "R & D".into(),
            blocks: vec![Block::Figure {
                stem: "f".into(),
                title: "F".into(),
                caption: "c".into(),
                svg: "<?xml version=\"1.0\"?>\n<svg></svg>".into(),
            }],
        };
        let html = render(&doc);
        assert!(html.contains("<title>R &amp; D</title>"));
        assert!(html.contains("<figure id=\"f\">\n<svg></svg>"), "{html}");
        assert!(!html.contains("<?xml"));
    }
}
