//! scalepipe: declarative scaling-law experiments.
//!
//! A pipeline file describes stages (datasets, training, evaluation, fits,
//! reports, arbitrary commands) and sweeps over their parameters. The engine
//! expands sweeps into stage instances ([`graph::Plan`]), fingerprints each one,
//! and runs what the content-addressed store ([`store::Store`]) does not already
//! hold, in parallel ([`executor::Executor`]). See ARCHITECTURE.md.

pub mod cli;
pub mod data;
pub mod design;
pub mod digest;
pub mod error;
pub mod executor;
pub mod fit;
pub mod graph;
pub mod json_file;
pub mod kinds_doc;
pub mod numfmt;
pub mod observer;
pub mod pipeline;
pub mod process;
pub mod report;
pub mod stages;
pub mod store;
pub mod train;
pub mod workspace;

pub use error::Error;
pub use workspace::{RunOptions, Workspace};
