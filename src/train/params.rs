//! A model's parameters: named, runtime-shaped dfdx tensors with a role each.
//!
//! Every parameter is stored flat, as a `(usize,)` tensor, and viewed as a matrix
//! only where a layer uses it. A contiguous reshape keeps the tensor's id, so the
//! gradient dfdx accumulates for the matrix view lands in the flat tensor's slot of
//! [`Gradients`]; the optimiser and checkpoint code then handle one tensor type.
//! Counts (total and non-embedding) are summed from the tensors actually built, so
//! they are exact by construction.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::Backend;

/// What a parameter is for; decides weight decay and the non-embedding count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Token or positional embedding, or an untied output embedding: excluded from
    /// the non-embedding count (Kaplan et al. 2020), decayed like a weight.
    Embedding,
    /// A weight matrix: decayed.
    Weight,
    /// A bias or layer-norm scale/shift: not decayed (as in nanoGPT and GPT-2).
    Bias,
}

impl Role {
    /// Whether AdamW applies weight decay to this parameter.
    pub fn decays(self) -> bool {
        !matches!(self, Role::Bias)
    }
}

/// Index of a parameter in its [`Params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamId(pub usize);

/// One named parameter.
#[derive(Debug, Clone)]
pub struct Param<D: Backend> {
    pub name: String,
    /// Logical shape (`[rows, cols]` for a matrix, `[n]` for a vector).
    pub shape: Vec<usize>,
    pub role: Role,
    /// The values, flat and row-major.
    pub value: Tensor<(usize,), f32, D>,
}

impl<D: Backend> Param<D> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How to initialise a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
}

/// The parameters of one model, in the order the model created them.
#[derive(Debug, Clone)]
pub struct Params<D: Backend> {
    dev: D,
    entries: Vec<Param<D>>,
}

impl<D: Backend> Params<D> {
    pub fn new(dev: D) -> Self {
        Params {
            dev,
            entries: Vec::new(),
        }
    }

    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Adds a parameter initialised from `rng`. Values are drawn on the host from a
    /// seeded generator, so the initial model is identical on every device.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        role: Role,
        init: Init,
        rng: &mut impl Rng,
    ) -> ParamId {
        let numel: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Zeros => vec![0.0; numel],
            Init::Ones => vec![1.0; numel],
            Init::Normal(std) => {
                let normal = Normal::new(0.0, std).expect("finite std");
                (0..numel).map(|_| normal.sample(rng) as f32).collect()
            }
        };
        self.push(name.into(), shape.to_vec(), role, values)
    }

    /// Adds a parameter with the given values (used when loading a checkpoint).
    pub fn push(
        &mut self,
        name: String,
        shape: Vec<usize>,
        role: Role,
        values: Vec<f32>,
    ) -> ParamId {
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        let n = values.len();
        let value = self.dev.tensor_from_vec(values, (n,));
        self.entries.push(Param {
            name,
            shape,
            role,
            value,
        });
        ParamId(self.entries.len() - 1)
    }

    /// The parameter as a `(rows, cols)` matrix carrying an empty tape of type `T`,
    /// so it can join a traced computation.
    pub fn matrix<T: Tape<f32, D>>(&self, id: ParamId) -> Tensor<(usize, usize), f32, D, T> {
        let p = &self.entries[id.0];
        debug_assert_eq!(p.shape.len(), 2, "{} is not a matrix", p.name);
        p.value
            .retaped::<T>()
            .reshape_like(&(p.shape[0], p.shape[1]))
    }

    /// The parameter as a vector carrying an empty tape of type `T`.
    pub fn vector<T: Tape<f32, D>>(&self, id: ParamId) -> Tensor<(usize,), f32, D, T> {
        self.entries[id.0].value.retaped::<T>()
    }

    /// The parameter's matrix view with `tape` on it: the first parameter of a
    /// computation (an embedding table) carries the tape the loss is traced on.
    pub fn matrix_with_tape<T: Tape<f32, D>>(
        &self,
        id: ParamId,
        tape: T,
    ) -> Tensor<(usize, usize), f32, D, T> {
        let p = &self.entries[id.0];
        p.value
            .clone()
            .put_tape(tape)
            .reshape_like(&(p.shape[0], p.shape[1]))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Param<D>> {
        self.entries.iter()
    }

    pub fn get(&self, id: ParamId) -> &Param<D> {
        &self.entries[id.0]
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parameter `i`'s tensor, for an in-place update (its id stays the same).
    pub fn value_mut(&mut self, i: usize) -> &mut Tensor<(usize,), f32, D> {
        &mut self.entries[i].value
    }

    /// Moves parameter `i`'s tensor out (leaving an empty one until [`Params::set`]
    /// puts the update back), so the update owns the buffer and can reuse it.
    pub fn take(&mut self, i: usize) -> Tensor<(usize,), f32, D> {
        let empty = self.dev.zeros_like(&(0,));
        std::mem::replace(&mut self.entries[i].value, empty)
    }

    /// Replaces parameter `i`'s values (the optimiser's update). The new tensor
    /// has a new id; gradients are allocated afresh for every step.
    pub fn set(&mut self, i: usize, value: Tensor<(usize,), f32, D>) {
        debug_assert_eq!(value.shape().0, self.entries[i].numel());
        self.entries[i].value = value;
    }

    /// Total parameter count N.
    pub fn count(&self) -> usize {
        self.entries.iter().map(Param::numel).sum()
    }

    /// Parameter count without embeddings (token, positional, untied output).
    pub fn count_non_embedding(&self) -> usize {
        self.entries
            .iter()
            .filter(|p| p.role != Role::Embedding)
            .map(Param::numel)
            .sum()
    }

    /// A gradient store with a zeroed slot for every parameter, ready to be traced
    /// into. Slots for parameters a batch does not touch stay zero instead of
    /// missing.
    pub fn alloc_grads(&self) -> Gradients<f32, D> {
        let mut grads = Gradients::leaky();
        for p in &self.entries {
            grads.try_alloc_for(&p.value).expect("allocating gradients");
        }
        grads
    }

    /// A fresh tape holding [`Params::alloc_grads`]: the forward pass of a training
    /// step records onto it, and `backward` returns the filled gradients.
    pub fn tape(&self) -> OwnedTape<f32, D> {
        let (_, tape) = ZerosTensor::<f32>::zeros_like(&self.dev, &())
            .traced(self.alloc_grads())
            .split_tape();
        tape
    }

    /// Copies every parameter to the host: `(name, shape, values)`.
    pub fn to_host(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.entries
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.value.as_vec()))
            .collect()
    }
}
