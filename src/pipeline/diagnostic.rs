//! A user-facing error located in a pipeline file, rendered with its source line.

use std::fmt;
use std::path::PathBuf;

use super::{Source, Span};

/// An error in a pipeline file: what is wrong, where, and in which stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line and column; `None` when the error has no single location.
    pub location: Option<(usize, usize)>,
    /// Length of the underlined text, in characters (at least 1).
    pub width: usize,
    pub line_text: String,
    pub stage: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error at `span` in `source`.
    pub fn at(source: &Source, span: Option<Span>, message: impl Into<String>) -> Self {
        let (location, width, line_text) = match span {
            Some(span) => {
                let (line, col) = source.line_col(span.start);
                let line_text = source.line_text(line).to_string();
                let (end_line, _) = source.line_col(span.end);
                let width = if end_line == line {
                    source.text()[span.start..span.end.min(source.text().len())]
                        .chars()
                        .count()
                } else {
                    line_text.chars().count().saturating_sub(col - 1)
                };
                (Some((line, col)), width.max(1), line_text)
            }
            None => (None, 1, String::new()),
        };
        Diagnostic {
            path: source.path().to_path_buf(),
            location,
            width,
            line_text,
            stage: None,
            message: message.into(),
        }
    }

    /// Names the stage the error belongs to.
    pub fn in_stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// The 1-based line, if the error has a location.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|(line, _)| line)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stage {
            Some(stage) => writeln!(f, "error: stage `{stage}`: {}", self.message)?,
            None => writeln!(f, "error: {}", self.message)?,
        }
        match self.location {
            Some((line, col)) => {
                let gutter = line.to_string().len();
                writeln!(f, "{:gutter$}--> {}:{line}:{col}", "", self.path.display())?;
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{line} | {}", self.line_text)?;
                write!(
                    f,
                    "{:gutter$} | {}{}",
                    "",
                    " ".repeat(col - 1),
                    "^".repeat(self.width)
                )
            }
            None => write!(f, "  --> {}", self.path.display()),
        }
    }
}
