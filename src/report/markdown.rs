//! Renders a [`Doc`] as GitHub-flavoured Markdown (`report.md`); figures link
//! to the PNG files written next to it.

use super::document::{Block, Doc};

/// The document as Markdown.
pub fn render(doc: &Doc) -> String {
    let mut out = format!("# {}\n", doc.title);
    for block in &doc.blocks {
        out.push('\n');
        match block {
            Block::Heading(level, text) => {
                out.push_str(&format!("{} {text}\n", "#".repeat(*level as usize)));
            }
            Block::Para(text) => {
                out.push_str(text);
                out.push('\n');
            }
            Block::List(items) => {
                for item in items {
                    out.push_str(&format!("- {item}\n"));
                }
            }
            Block::Table { header, rows } => {
                out.push_str(&row(header));
                out.push_str(&row(&vec!["---".to_string(); header.len()]));
                for r in rows {
                    out.push_str(&row(r));
                }
            }
            Block::Figure {
                stem,
                title,
                caption,
                ..
            } => {
                out.push_str(&format!(
                    "![{title}](figures/{stem}.png)\n\n{caption} ([SVG](figures/{stem}.svg))\n"
                ));
            }
            Block::Code(code) => {
                out.push_str(&format!("```sh\n{code}\n```\n"));
            }
        }
    }
    out
}

/// A table row; `|` inside a cell would end it, so it is escaped.
fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", cells.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_figures_render() {
        let doc = Doc {
            title: "T".into(),
            blocks: vec![
                Block::Table {
                    header: vec!["a".into(), "b".into()],
                    rows: vec![vec!["x|y".into(), "`z`".into()]],
                },
                Block::Figure {
                    stem: "loss_vs_n".into(),
                    title: "Loss vs N".into(),
                    caption: "cap".into(),
                    svg: "<svg/>".into(),
                },
            ],
        };
        let md = render(&doc);
        assert!(md.starts_with("# T\n"));
        assert!(
            md.contains("| a | b |\n| --- | --- |\n| x\\|y | `z` |\n"),
            "{md}"
        );
        assert!(md.contains("![Loss vs N](figures/loss_vs_n.png)"));
        assert!(!md.contains("<svg"));
    }
}
