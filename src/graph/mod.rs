//! The DAG of stage instances: expansion of sweeps, matching of inputs,
//! configuration and fingerprinting ([`Plan`]), and its rendering as DOT or Mermaid.

mod plan;
mod render;

pub use plan::{instance_id, Instance, Plan};
pub use render::{render, GraphFormat};
