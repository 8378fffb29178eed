//! Observers: what consumes the executor's events (not to be confused with
//! `crate::report`, the report stage's documents). The terminal reporter draws
//! progress bars and one line per finished stage; the run record is written from
//! the results afterwards, and the outcome lines name reports and fitted laws.

mod outcome;
mod run_record;
mod terminal;

pub use outcome::outcome_lines;
pub use run_record::{InstanceRecord, RunRecord};
pub use terminal::TerminalReporter;
