//! Integration tests: one binary (one link of the big dependency tree), one
//! module per area. They drive the real `scalepipe` binary in temporary
//! workspaces through the small builder in `harness`.

mod curve_compare;
mod curves;
mod data;
mod defaults;
mod design;
mod diagnostics;
mod disk;
mod engine;
mod faults;
mod fit;
mod formats;
mod fused;
mod harness;
mod malformed;
mod matmul;
mod report;
mod seeds;
mod slurm;
mod stability;
mod store;
mod train;
mod wsd;
