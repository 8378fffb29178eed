//! Checkpoints: parameters in `model.safetensors` and the architecture in
//! `model.json`, which is all the `eval` stage needs to rebuild the model; and a
//! WSD run's stable-phase checkpoint, `stable.safetensors` (parameters and both
//! AdamW moments) with `stable.json` (the step, the optimiser's update count and
//! the data sampler's position), everything a longer run needs to continue the
//! stable phase bitwise as if it had run it itself.
//!
//! The safetensors file carries no metadata map (its `HashMap` would make the
//! header order, and so the bytes, vary between runs); tensors are stored under
//! their parameter names and the library orders them deterministically.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::adamw::AdamWState;
use super::batches::SamplerState;
use super::model::{Model, ModelSpec};
use super::params::{ParamId, Params, Role};
use super::{Backend, TrainError};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const SPEC_FILE: &str = "model.json";
pub const STABLE_WEIGHTS_FILE: &str = "stable.safetensors";
pub const STABLE_STATE_FILE: &str = "stable.json";

/// `stable.json`: where in its run a stable-phase checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StableState {
    /// Updates applied before the checkpoint: the run continues at this step.
    pub step: usize,
    /// Training units seen so far.
    pub d: usize,
    /// AdamW's update count (its bias correction).
    pub adam_t: i32,
    pub sampler: SamplerState,
}

/// A stable-phase checkpoint read back.
pub struct Stable<D: Backend> {
    pub state: StableState,
    pub model: Model,
    pub params: Params<D>,
    pub adamw: AdamWState,
}

/// `model.json`: the architecture plus a readable list of the parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    #[serde(flatten)]
    pub spec: ModelSpec,
    pub n_params: usize,
    pub n_params_non_embedding: usize,
    pub parameters: Vec<ParamEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// Writes named f32 tensors `(name, shape, values)` as a safetensors file.
fn write_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), TrainError> {
    let bytes: Vec<(&str, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.as_str(), shape.as_slice(), b)
        })
        .collect();
    let err = |e: &dyn std::fmt::Display| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            TensorView::new(Dtype::F32, shape.to_vec(), b).map(|view| (*name, view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    let data = safetensors::serialize(views, None).map_err(|e| err(&e))?;
    std::fs::write(path, data).map_err(|e| TrainError::io(path, e))
}

/// Reads the f32 tensor `name` of shape `shape` from a safetensors file's
/// contents.
fn read_tensor(
    path: &Path,
    tensors: &SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, TrainError> {
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let view = tensors
        .tensor(name)
        .map_err(|e| bad(format!("tensor {name}: {e}")))?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(bad(format!(
            "tensor {name} is {:?} {:?}, the architecture wants F32 {shape:?}",
            view.dtype(),
            view.shape(),
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Writes `model.safetensors` and `model.json` into `dir`.
pub fn save<D: Backend>(
    dir: &Path,
    spec: &ModelSpec,
    params: &Params<D>,
) -> Result<(), TrainError> {
    write_tensors(&dir.join(WEIGHTS_FILE), &params.to_host())?;

    let file = ModelFile {
        spec: spec.clone(),
        n_params: params.count(),
        n_params_non_embedding: params.count_non_embedding(),
        parameters: params
            .iter()
            .map(|p| ParamEntry {
                name: p.name.clone(),
                shape: p.shape.clone(),
                role: p.role,
            })
            .collect(),
    };
    let spec_path = dir.join(SPEC_FILE);
    let json = serde_json::to_string_pretty(&file).expect("model.json serializes");
    std::fs::write(&spec_path, json + "\n").map_err(|e| TrainError::io(&spec_path, e))
}

/// Reads `model.json`.
pub fn read_spec(dir: &Path) -> Result<ModelFile, TrainError> {
    let path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        message: e.to_string(),
    })
}

/// Rebuilds the model saved in `dir` on `dev`.
pub fn load<D: Backend>(dir: &Path, dev: D) -> Result<(ModelSpec, Model, Params<D>), TrainError> {
    let file = read_spec(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let (model, params) = read_params(&path, &file.spec, dev, "")?;
    Ok((file.spec, model, params))
}

/// Builds the architecture of `spec` (names, shapes, roles), then overwrites
/// every value with the tensor `{prefix}{name}` of the safetensors file `path`.
fn read_params<D: Backend>(
    path: &Path,
    spec: &ModelSpec,
    dev: D,
    prefix: &str,
) -> Result<(Model, Params<D>), TrainError> {
    let data = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let tensors = SafeTensors::deserialize(&data).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut params = Params::new(dev.clone());
    let model = Model::build(spec, &mut params, &mut ChaCha8Rng::seed_from_u64(0));
    for i in 0..params.len() {
        let p = params.get(ParamId(i));
        let values = read_tensor(path, &tensors, &format!("{prefix}{}", p.name), &p.shape)?;
        let n = values.len();
        params.set(i, dev.tensor_from_vec(values, (n,)));
    }
    Ok((model, params))
}

/// Writes a stable-phase checkpoint into `dir`: the parameters, both AdamW
/// moments of each, and `state`.
pub fn save_stable<D: Backend>(
    dir: &Path,
    params: &Params<D>,
    adamw: &AdamWState,
    state: &StableState,
) -> Result<(), TrainError> {
    let mut tensors = Vec::with_capacity(3 * params.len());
    for (i, (name, shape, values)) in params.to_host().into_iter().enumerate() {
        tensors.push((format!("adam_m.{name}"), shape.clone(), adamw.m[i].clone()));
        tensors.push((format!("adam_v.{name}"), shape.clone(), adamw.v[i].clone()));
        tensors.push((format!("param.{name}"), shape, values));
    }
    write_tensors(&dir.join(STABLE_WEIGHTS_FILE), &tensors)?;
    crate::json_file::write(&dir.join(STABLE_STATE_FILE), STABLE_STATE_FILE, state).map_err(|e| {
        TrainError::Checkpoint {
            path: dir.join(STABLE_STATE_FILE),
            message: e.to_string(),
        }
    })
}

/// The stable-phase checkpoint's state in `dir`, if the directory holds one.
pub fn read_stable_state(dir: &Path) -> Result<Option<StableState>, TrainError> {
    let path = dir.join(STABLE_STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    crate::json_file::read(&path, STABLE_STATE_FILE)
        .map(Some)
        .map_err(|e| TrainError::Checkpoint {
            path,
            message: e.to_string(),
        })
}

/// Reads the stable-phase checkpoint in `dir` for a model of `spec` onto `dev`.
pub fn load_stable<D: Backend>(
    dir: &Path,
    spec: &ModelSpec,
    dev: D,
) -> Result<Stable<D>, TrainError> {
    let state = read_stable_state(dir)?.ok_or_else(|| TrainError::Checkpoint {
        path: dir.join(STABLE_STATE_FILE),
        message: "no stable-phase checkpoint here".into(),
    })?;
    let path = dir.join(STABLE_WEIGHTS_FILE);
    let (model, params) = read_params(&path, spec, dev, "param.")?;
    let data = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let tensors = SafeTensors::deserialize(&data).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let moments = |which: &str| {
        params
            .iter()
            .map(|p| read_tensor(&path, &tensors, &format!("{which}.{}", p.name), &p.shape))
            .collect::<Result<Vec<_>, _>>()
    };
    let adamw = AdamWState {
        t: state.adam_t,
        m: moments("adam_m")?,
        v: moments("adam_v")?,
    };
    Ok(Stable {
        state,
        model,
        params,
        adamw,
    })
}
