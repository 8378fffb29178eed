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
//! .scalepipe/pipelines/<name>.json   each pipeline's latest instances (plan reasons, gc)
//! results/<pipeline>/<id>/           copies of the latest outputs
//! results/<pipeline>/run.json        the run record
//! ```

mod fingerprint;
mod manifest;
mod results;
mod state;
#[allow(clippy::module_inception)]
mod store;

pub use fingerprint::{CacheKey, CanonicalJson, FileHash};
pub use manifest::{unix_now, Manifest, OutputFile};
pub use results::{Listing, ResultsView};
pub use state::{PipelineState, StateEntry, StoredKey};
pub use store::{Pending, Store, StoreLock};
