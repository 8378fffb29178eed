//! scalepipe: declarative scaling-law experiments.
//!
//! A pipeline file describes stages (datasets, training, evaluation, fits,
//! reports, arbitrary commands) and sweeps over their parameters. The engine
//! expands sweeps into stage instances, resolves them into a DAG, fingerprints each
//! instance, and runs what the content-addressed store does not already hold.

pub mod data;
pub mod stages;
pub mod train;
