//! Running a plan: deciding what must run, scheduling ready instances on a
//! bounded pool, and reporting everything as [`Event`]s. The executor never
//! prints; observers (`crate::observer`) consume its events.

mod attempt;
mod claim;
mod decision;
mod event;
#[allow(clippy::module_inception)]
mod executor;
mod scheduler;
pub mod slurm;

pub use attempt::Attempt;
pub use claim::{Claim, Claims, Holder};
pub use decision::{decide, Decision};
pub use event::{Event, Outcome};
pub use executor::{Executor, InstanceResult, Status};
