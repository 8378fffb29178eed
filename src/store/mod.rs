//! The content-addressed store under `.scalepipe/` and the readable results view.
//!
//! Layout of a workspace:
//!
//! ```text
//! .scalepipe/lock                    held by the run that writes the store
//! .scalepipe/cache/<fp>/manifest.json  present only in complete entries
//! .scalepipe/cache/<fp>/out/         the stage's outputs
//! .scalepipe/cache/<fp>/log.txt      what the stage printed
//! .scalepipe/tmp/<fp>.<pid>.<n>/     entries being written (renamed into cache/)
//! .scalepipe/failed/<fp>/            the last failed attempt, for its log
//! .scalepipe/quarantine/<fp>.<t>.<pid>.<n>/  entries that failed a check, with reason.txt
//! .scalepipe/pipelines/<name>.json   each pipeline's latest instances (plan reasons, gc)
//! .scalepipe/prefixes/<prefix>/<fp>  entries sharing a prefix (WSD stable phases)
//! results/<pipeline>/<dir>/          copies of the latest outputs (`dir`: the id,
//!                                    escaped and shortened to a valid file name)
//! results/<pipeline>/run.json        the run record
//! ```

pub mod durable;
mod fingerprint;
mod manifest;
mod prefix_index;
mod quarantine;
mod results;
mod state;
#[allow(clippy::module_inception)]
mod store;
mod verify;

pub use fingerprint::{CacheKey, CanonicalJson, FileHash};
pub use manifest::{unix_now, Manifest, OutputFile};
pub use results::{dir_name, Listing, ResultsView};
pub use state::{PipelineState, StateEntry, StateError, StoredKey};
pub use store::{Pending, Store, StoreLock};
pub use verify::{BadEntry, Depth, Problem};
