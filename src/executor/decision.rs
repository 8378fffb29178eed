//! Whether each instance is cached or must run, and why.

use std::borrow::Cow;

use crate::graph::Plan;
use crate::store::{PipelineState, Store};

/// What a run will do with one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An entry with this fingerprint and its manifest is in the store. (Its
    /// files are checked against the manifest when the run reads them.)
    Cached,
    /// The instance runs; the reason says what changed (mostly fixed words, so
    /// borrowed: a first run of a large sweep decides "new" for every instance).
    Run { reason: Cow<'static, str> },
}

impl Decision {
    pub fn runs(&self) -> bool {
        matches!(self, Decision::Run { .. })
    }

    /// `"cached"` or `"run"`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Cached => "cached",
            Decision::Run { .. } => "run",
        }
    }

    /// Why it runs (empty when cached).
    pub fn reason(&self) -> &str {
        match self {
            Decision::Cached => "",
            Decision::Run { reason } => reason,
        }
    }
}

/// Decides every instance of a plan against the store and the pipeline's last run.
pub fn decide(plan: &Plan, store: &Store, state: &PipelineState, force: bool) -> Vec<Decision> {
    if force {
        return vec![
            Decision::Run {
                reason: Cow::Borrowed("forced"),
            };
            plan.instances.len()
        ];
    }
    // One listing of the store, then a `stat` of the manifest only for names
    // that are listed: a directory without its manifest is never an entry.
    let listed = store.listed();
    plan.instances
        .iter()
        .map(|inst| {
            if listed.contains(&inst.fingerprint) && store.contains(&inst.fingerprint) {
                return Decision::Cached;
            }
            let before = state
                .instances
                .get(&inst.id)
                .and_then(|entry| entry.key.parse());
            let reason = match before {
                None => Cow::Borrowed("new"),
                Some(before) => Cow::Owned(inst.key.change_from(&before)),
            };
            Decision::Run { reason }
        })
        .collect()
}
