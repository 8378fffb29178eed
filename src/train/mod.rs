//! Training and evaluation of model families whose sizes are set at run time.
//!
//! dfdx 0.13's `nn` modules fix layer sizes with const generics, but a scaling-law
//! sweep sets width and depth from the pipeline file. So the models here are
//! assembled by hand from runtime-shaped dfdx tensors (`(usize, usize)` shapes)
//! held in a [`Params`] collection, differentiated with dfdx's tape, and updated by
//! an AdamW that calls dfdx's fused Adam kernel with decoupled weight decay, so
//! the same code runs on `Cpu` and, behind the `cuda` feature, on `Cuda`.
//!
//! Layout: [`params`] (named tensors, exact counts), [`layers`] (linear, layer norm,
//! losses), the three families [`mlp`], [`transformer`], [`text_classifier`] joined
//! by [`model`], [`family`] (a pipeline's model request meets a dataset),
//! [`adamw`], [`fused`] (fused CPU kernels), [`matmul`] (matrix products on the
//! CPU through gemm 0.19), [`schedule`], [`flops`], [`batches`] (data order), [`device`] (the
//! dfdx device and thread pool), and [`trainer`], which reads top to bottom like
//! nanoGPT's `train.py`. [`evaluate`] computes held-out loss for the `eval` stage.
//!
//! The files a run leaves each have one owner here: [`metrics`] (`metrics.json`),
//! [`curve`] (`loss_curve.csv`), [`checkpoint`] (`model.safetensors`, `stable.*`,
//! `model.json`) and [`dataset_record`] (`dataset.json`).

pub mod adamw;
pub mod batches;
pub mod checkpoint;
pub mod curve;
pub mod dataset_record;
pub mod device;
pub mod evaluate;
pub mod family;
pub mod flops;
pub mod fused;
pub mod layers;
pub mod matmul;
pub mod metrics;
pub mod mlp;
pub mod model;
pub mod params;
pub mod schedule;
pub mod text_classifier;
pub mod trainer;
pub mod transformer;

pub use adamw::AdamW;
pub use model::{Model, ModelSpec};
pub use params::{ParamId, Params, Role};

/// The dfdx devices training runs on: `Cpu`, and `Cuda` with the `cuda` feature.
/// `Cache` lets the trainer turn on dfdx's allocation cache, which reuses buffers
/// between steps instead of returning them to the allocator; [`adamw::GradOps`]
/// gives clipping access to gradient buffers; [`fused::FusedOps`] runs fused
/// kernels where a device has them; [`matmul::MatMulOps`] multiplies with gemm
/// 0.19's AVX-512 kernels on the CPU.
pub trait Backend: adamw::GradOps + fused::FusedOps + matmul::MatMulOps {}

impl<D: adamw::GradOps + fused::FusedOps + matmul::MatMulOps> Backend for D {}

/// Why training or evaluation could not proceed (a diverging loss is not an error:
/// it is a result, see [`trainer::Status`]).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The dataset does not fit the model (wrong task, missing vocab, ...).
    #[error("{0}")]
    Data(String),
    /// A dataset file could not be read.
    #[error(transparent)]
    Dataset(#[from] crate::data::DataError),
    /// A checkpoint or model description could not be read or written.
    #[error("{path}: {message}")]
    Checkpoint {
        path: std::path::PathBuf,
        message: String,
    },
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The device failed (out of memory, CUDA error).
    #[error("device error: {0}")]
    Device(String),
    /// The user interrupted the run.
    #[error("interrupted")]
    Cancelled,
}

impl TrainError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
