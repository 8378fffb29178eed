//! Checkpoints: parameters in `model.safetensors` and the architecture in
//! `model.json`, which is all the `eval` stage needs to rebuild the model.
//!
//! The safetensors file carries no metadata map (its `HashMap` would make the
//! header order, and so the bytes, vary between runs); tensors are stored under
//! their parameter names and the library orders them deterministically.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::model::{Model, ModelSpec};
use super::params::{Params, Role};
use super::{Backend, TrainError};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const SPEC_FILE: &str = "model.json";

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

/// Writes `model.safetensors` and `model.json` into `dir`.
pub fn save<D: Backend>(
    dir: &Path,
    spec: &ModelSpec,
    params: &Params<D>,
) -> Result<(), TrainError> {
    let host = params.to_host();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = host
        .iter()
        .map(|(name, shape, values)| {
            let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape.clone(), b)
        })
        .collect();
    let weights_path = dir.join(WEIGHTS_FILE);
    let err = |e: &dyn std::fmt::Display| TrainError::Checkpoint {
        path: weights_path.clone(),
        message: e.to_string(),
    };
    let views = bytes
        .iter()
        .map(|(name, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    let data = safetensors::serialize(views, None).map_err(|e| err(&e))?;
    std::fs::write(&weights_path, data).map_err(|e| TrainError::io(&weights_path, e))?;

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
    let bad = |message: String| TrainError::Checkpoint {
        path: path.clone(),
        message,
    };
    let data = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let tensors = SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
    // Build the architecture (names, shapes, roles), then overwrite every value.
    let mut params = Params::new(dev.clone());
    let model = Model::build(&file.spec, &mut params, &mut ChaCha8Rng::seed_from_u64(0));
    for i in 0..params.len() {
        let p = params.get(super::params::ParamId(i));
        let view = tensors
            .tensor(&p.name)
            .map_err(|e| bad(format!("parameter {}: {e}", p.name)))?;
        if view.dtype() != Dtype::F32 || view.shape() != p.shape.as_slice() {
            return Err(bad(format!(
                "parameter {} is {:?} {:?}, the architecture wants F32 {:?}",
                p.name,
                view.dtype(),
                view.shape(),
                p.shape
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let n = values.len();
        params.set(i, dev.tensor_from_vec(values, (n,)));
    }
    Ok((file.spec, model, params))
}
