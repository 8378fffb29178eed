//! Whether each instance is cached or must run, and why.

use crate::graph::Plan;
use crate::store::{PipelineState, Store};

/// What a run will do with one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A complete entry with this fingerprint is in the store.
    Cached,
    /// The instance runs; the reason says what changed.
    Run { reason: String },
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
    plan.instances
        .iter()
        .map(|inst| {
            if force {
                return Decision::Run {
                    reason: "forced".into(),
                };
            }
            if store.contains(&inst.fingerprint) {
                return Decision::Cached;
            }
            let reason = match state.instances.get(&inst.id) {
                None => "new".to_string(),
                Some(before) => inst.key.change_from(&before.key),
            };
            Decision::Run { reason }
        })
        .collect()
}
