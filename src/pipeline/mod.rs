//! Pipeline files: reading TOML into a validated [`Pipeline`].
//!
//! The first pass of the engine. It keeps every span from the file so that any
//! later pass can point at the line that caused an error ([`Diagnostic`]).

mod cluster;
mod diagnostic;
mod include;
mod parse;
mod source;
mod sweep;
mod value;

pub use cluster::{ExecutorKind, Placement, SlurmOptions, SlurmOverrides};
pub use diagnostic::Diagnostic;
pub use include::SweepFile;
pub use parse::{Foreach, Pipeline, StageDef};
pub use source::{Source, Span};
pub use sweep::{Point, Sweep, SweepMode};
pub use value::{
    canonical_json, canonical_json_text, display_value, write_display_value, Canonical,
    CanonicalTable,
};
