//! Sweep files: a stage's `sweep_file = "design/round1.toml"` (or a list of
//! them) adds the points of a sweep written in another file, so a design's
//! proposal is accepted by naming its fragment, and the points of each round
//! stay in their own file.
//!
//! A sweep file holds what a `[stages.<name>.sweep]` table holds (keys with
//! lists of values) and an optional `sweep_mode`. Paths resolve against the
//! pipeline file's directory. Errors in the file are located in the file; its
//! points enter the fingerprints of the instances they make like any sweep
//! point's, so editing the file re-plans only the points it adds or changes.

use std::path::{Path, PathBuf};

use toml_edit::Item;

use super::parse::Parser;
use super::{Diagnostic, Source, Span, Sweep, SweepMode};

/// A sweep read from a file.
#[derive(Debug, Clone)]
pub struct SweepFile {
    /// As written in the pipeline file.
    pub name: String,
    /// Resolved against the pipeline file's directory.
    pub path: PathBuf,
    /// Its axes' spans point at the `sweep_file` value in the pipeline file,
    /// so errors a kind finds in a value show where the file is named.
    pub sweep: Sweep,
}

type PResult<T> = Result<T, Box<Diagnostic>>;

impl Parser<'_> {
    /// The files a stage's `sweep_file` names, read and validated.
    pub(super) fn sweep_files(&self, item: &Item, base_dir: &Path) -> PResult<Vec<SweepFile>> {
        let expected =
            "`sweep_file` must be a file name or a list of them, like `sweep_file = \"design/round1.toml\"`";
        let mut named: Vec<(String, Option<Span>)> = Vec::new();
        if let Some(s) = item.as_str() {
            named.push((s.to_string(), item.span()));
        } else if let Some(array) = item.as_array() {
            for value in array.iter() {
                let s = value
                    .as_str()
                    .ok_or_else(|| self.error(value.span(), expected))?;
                named.push((s.to_string(), value.span()));
            }
        } else {
            return Err(self.error(item.span(), expected));
        }
        let mut files: Vec<SweepFile> = Vec::new();
        for (name, span) in named {
            if name.is_empty() {
                return Err(self.error(span, expected));
            }
            let path = base_dir.join(&name);
            if files.iter().any(|f| f.path == path) {
                return Err(self.error(span, format!("`{name}` is listed twice in `sweep_file`")));
            }
            let mut sweep = self.read_sweep_file(&name, &path, span.clone())?;
            for axis in &mut sweep.axes {
                axis.span = span.clone();
            }
            files.push(SweepFile { name, path, sweep });
        }
        Ok(files)
    }

    fn read_sweep_file(&self, name: &str, path: &Path, span: Option<Span>) -> PResult<Sweep> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.error(
                span.clone(),
                format!("cannot read sweep file `{name}` ({}): {e}", path.display()),
            )
        })?;
        let source = Source::new(path, text);
        let inner = Parser::new(&source);
        let doc = toml_edit::ImDocument::parse(source.text())
            .map_err(|e| inner.error(e.span(), super::parse::syntax_message(e.message())))?;
        let mut table = doc.as_table().clone();
        let mode = match table.remove("sweep_mode") {
            None => SweepMode::Grid,
            Some(item) => match item.as_str() {
                Some("grid") => SweepMode::Grid,
                Some("zip") => SweepMode::Zip,
                _ => {
                    return Err(inner.error(item.span(), "`sweep_mode` must be \"grid\" or \"zip\""))
                }
            },
        };
        for (key, item) in table.iter() {
            if item.is_table() {
                return Err(inner.error(
                    table.key(key).and_then(|k| k.span()),
                    format!("a sweep file holds lists of values, like `n = [1e7, 2e7]` (and `sweep_mode`), not a table `[{key}]`"),
                ));
            }
        }
        inner.sweep(&Item::Table(table), mode, Some(0..0))
    }
}
