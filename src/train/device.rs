//! Where training and evaluation run: the dfdx device (`cpu`, or `cuda` with the
//! `cuda` cargo feature) and the rayon pool of the threads a stage was granted.
//!
//! Both `train` and `eval` go through [`run_on`], so device selection, the
//! CUDA-less build's error and the thread pool exist once.

use serde::{Deserialize, Serialize};

use super::{Backend, TrainError};

/// Where a stage's tensor work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// Whether this build can run on the device (CUDA needs the `cuda` feature).
    pub fn available(self) -> bool {
        match self {
            DeviceChoice::Cpu => true,
            DeviceChoice::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// Work that runs on any dfdx device. (A trait rather than a closure, because
/// the device type is a generic parameter of the work.)
pub trait DeviceJob {
    type Output;
    fn run<D: Backend>(self, dev: D) -> Result<Self::Output, TrainError>;
}

/// Runs `job` on `device` seeded with `seed`, inside a rayon pool of `threads`
/// threads (dfdx's CPU kernels and the trainer's own parallel work use it).
pub fn run_on<J: DeviceJob + Send>(
    device: DeviceChoice,
    seed: u64,
    threads: usize,
    job: J,
) -> Result<J::Output, TrainError>
where
    J::Output: Send,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| TrainError::Device(format!("cannot start {threads} threads: {e}")))?;
    pool.install(|| match device {
        DeviceChoice::Cpu => job.run(dfdx::tensor::Cpu::seed_from_u64(seed)),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => {
            let dev = dfdx::tensor::Cuda::try_build(0, seed)
                .map_err(|e| TrainError::Device(format!("{e:?}")))?;
            job.run(dev)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda => Err(TrainError::Device(
            "this build has no CUDA support (cargo feature `cuda`)".into(),
        )),
    })
}
