//! Running a plan: deciding what must run, scheduling ready instances on a
//! bounded pool, and reporting everything as [`Event`]s. The executor never
//! prints; observers (`crate::observer`) consume its events.

mod claim;
mod decision;
mod event;
#[allow(clippy::module_inception)]
mod executor;
mod scheduler;

pub use claim::{Claim, Claims, Holder};
pub use decision::{decide, Decision};
pub use event::{Event, Outcome};
pub use executor::{Executor, InstanceResult, Status};
