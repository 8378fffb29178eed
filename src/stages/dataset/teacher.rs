//! `dataset.teacher`: inputs x ~ N(0, I) labelled by a random "teacher" MLP, so the
//! best achievable loss is known.
//!
//! Regression targets are the teacher's output plus Gaussian noise of standard
//! deviation `noise_std`: the irreducible mean squared error is exactly
//! `noise_std^2`. Classification labels are sampled from the teacher's softmax at
//! `temperature`: the irreducible cross-entropy is the teacher's expected entropy
//! E_x[H(p(.|x))], estimated by Monte Carlo and written with its standard error.
//!
//! The teacher's output is standardised (regression: zero mean, unit variance over
//! x; classification: unit RMS of the centred logits, before the temperature), so
//! `noise_std` and `temperature` mean the same thing whatever the teacher's size.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Deserialize;

use super::split::{Count, SplitSpec};
use super::subsample::{seeded_rng, stream};
use super::{json, new_meta, tick};
use crate::data::{write_meta, write_table, Columns, Split, Table, Targets, Task};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.teacher",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Held-out examples per split when `split` does not say.
const DEFAULT_HELD_OUT: u64 = 1000;
/// Draws used to standardise the teacher's output.
const CALIBRATION_DRAWS: usize = 4096;
/// Draws used to estimate the Bayes cross-entropy of classification.
const BAYES_DRAWS: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TeacherTask {
    Regression,
    Classification,
}

/// The reference of `dataset.teacher`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new("n", "integer", "required", "Training examples D."),
    ParamDoc::new("task", "\"regression\" | \"classification\"", "\"regression\"", "Real targets with Gaussian noise, or classes sampled from the teacher's softmax."),
    ParamDoc::new("input_dim", "integer", "16", "Features per example."),
    ParamDoc::new("teacher_width", "integer", "64", "Hidden width of the teacher MLP."),
    ParamDoc::new("teacher_depth", "integer", "2", "Hidden layers of the teacher MLP."),
    ParamDoc::new("noise_std", "number", "required for regression", "Standard deviation of the target noise; E = noise_std^2."),
    ParamDoc::new("classes", "integer", "required for classification", "Number of classes."),
    ParamDoc::new("temperature", "number", "1 (classification)", "Softmax temperature of the teacher's logits."),
    ParamDoc::new("split", "table {val, test}", "val = test = 1000", "Held-out sizes as counts (a generator has no pool to take fractions of), drawn from their own streams so they never change with D."),
    ParamDoc::new("seed", "integer", "the pipeline's seed", "Seeds the draw; same parameters and seed give byte-identical files."),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Training examples D.
    n: Count,
    #[serde(default)]
    split: SplitSpec,
    #[serde(default = "default_input_dim")]
    input_dim: usize,
    #[serde(default = "default_task")]
    task: TeacherTask,
    #[serde(default = "default_width")]
    teacher_width: usize,
    /// Hidden layers of the teacher.
    #[serde(default = "default_depth")]
    teacher_depth: usize,
    noise_std: Option<f64>,
    classes: Option<usize>,
    temperature: Option<f64>,
    seed: u64,
}

fn default_input_dim() -> usize {
    16
}
fn default_task() -> TeacherTask {
    TeacherTask::Regression
}
fn default_width() -> usize {
    64
}
fn default_depth() -> usize {
    2
}

/// A configured teacher dataset.
#[derive(Debug)]
struct TeacherJob {
    n: usize,
    val: usize,
    test: usize,
    input_dim: usize,
    width: usize,
    depth: usize,
    head: Head,
    seed: u64,
}

/// What the teacher's output becomes.
#[derive(Debug, Clone, Copy)]
enum Head {
    Regression { noise_std: f64 },
    Classification { classes: usize, temperature: f64 },
}

fn configure(params: &toml::Table, _cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    p.split.validate()?;
    let (val, test) = p
        .split
        .generated(KIND.name, (DEFAULT_HELD_OUT, DEFAULT_HELD_OUT))?;
    if p.input_dim == 0 {
        return Err(ParamError::at("input_dim", "expected an integer >= 1"));
    }
    if p.teacher_width == 0 {
        return Err(ParamError::at("teacher_width", "expected an integer >= 1"));
    }
    let head = match p.task {
        TeacherTask::Regression => {
            if p.classes.is_some() {
                return Err(ParamError::at(
                    "classes",
                    "only for task = \"classification\"",
                ));
            }
            if p.temperature.is_some() {
                return Err(ParamError::at(
                    "temperature",
                    "only for task = \"classification\"",
                ));
            }
            let noise_std = p.noise_std.unwrap_or(0.1);
            if !(noise_std >= 0.0 && noise_std.is_finite()) {
                return Err(ParamError::at("noise_std", "expected a number >= 0"));
            }
            Head::Regression { noise_std }
        }
        TeacherTask::Classification => {
            if p.noise_std.is_some() {
                return Err(ParamError::at(
                    "noise_std",
                    "only for task = \"regression\" (classification labels are sampled from the teacher's softmax; use `temperature`)",
                ));
            }
            let classes = p.classes.ok_or_else(|| {
                ParamError::new("task = \"classification\" needs `classes` (an integer >= 2)")
            })?;
            if classes < 2 {
                return Err(ParamError::at("classes", "expected an integer >= 2"));
            }
            let temperature = p.temperature.unwrap_or(1.0);
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(ParamError::at("temperature", "expected a number > 0"));
            }
            Head::Classification {
                classes,
                temperature,
            }
        }
    };
    Ok(Box::new(TeacherJob {
        n: p.n.0 as usize,
        val,
        test,
        input_dim: p.input_dim,
        width: p.teacher_width,
        depth: p.teacher_depth,
        head,
        seed: p.seed,
    }))
}

/// One dense layer: `out = w x + b`, `w` row-major `outputs x inputs`.
#[derive(Debug)]
struct Layer {
    w: Vec<f64>,
    b: Vec<f64>,
    inputs: usize,
    outputs: usize,
}

impl Layer {
    /// Weights N(0, 1/inputs) keep pre-activations near unit scale at any width.
    fn random(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> Layer {
        let scale = (1.0 / inputs as f64).sqrt();
        let w = (0..inputs * outputs)
            .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let b = (0..outputs)
            .map(|_| 0.1 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        Layer {
            w,
            b,
            inputs,
            outputs,
        }
    }

    fn apply(&self, x: &[f64], out: &mut Vec<f64>) {
        out.clear();
        for o in 0..self.outputs {
            let row = &self.w[o * self.inputs..(o + 1) * self.inputs];
            out.push(self.b[o] + row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>());
        }
    }
}

/// The teacher MLP: `depth` tanh hidden layers of `width`, then a linear head;
/// outputs standardised by `shift` and `scale`.
#[derive(Debug)]
struct Teacher {
    layers: Vec<Layer>,
    shift: f64,
    scale: f64,
}

impl Teacher {
    fn new(stage: &TeacherJob) -> Teacher {
        let mut rng = seeded_rng(stage.seed, stream::MODEL);
        let outputs = match stage.head {
            Head::Regression { .. } => 1,
            Head::Classification { classes, .. } => classes,
        };
        let mut layers = Vec::with_capacity(stage.depth + 1);
        let mut inputs = stage.input_dim;
        for _ in 0..stage.depth {
            layers.push(Layer::random(inputs, stage.width, &mut rng));
            inputs = stage.width;
        }
        layers.push(Layer::random(inputs, outputs, &mut rng));
        let mut teacher = Teacher {
            layers,
            shift: 0.0,
            scale: 1.0,
        };
        teacher.standardise(stage);
        teacher
    }

    /// Raw (unstandardised) outputs.
    fn raw(&self, x: &[f64]) -> Vec<f64> {
        let mut a = x.to_vec();
        let mut b = Vec::new();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.apply(&a, &mut b);
            if i < last {
                b.iter_mut().for_each(|v| *v = v.tanh());
            }
            std::mem::swap(&mut a, &mut b);
        }
        a
    }

    /// Standardised outputs: the regression target or the logits before temperature.
    fn output(&self, x: &[f64]) -> Vec<f64> {
        let mut out = self.raw(x);
        out.iter_mut()
            .for_each(|v| *v = (*v - self.shift) / self.scale);
        out
    }

    /// Sets `shift` and `scale` from draws of x on the calibration stream.
    fn standardise(&mut self, stage: &TeacherJob) {
        let mut rng = seeded_rng(stage.seed, stream::CALIBRATION);
        let (mut sum, mut sum_sq, mut count) = (0.0, 0.0, 0usize);
        for _ in 0..CALIBRATION_DRAWS {
            let x = draw_x(stage.input_dim, &mut rng);
            let out = self.raw(&x);
            match stage.head {
                Head::Regression { .. } => {
                    sum += out[0];
                    sum_sq += out[0] * out[0];
                    count += 1;
                }
                Head::Classification { .. } => {
                    // Softmax ignores a shift per example: measure the centred spread.
                    let mean = out.iter().sum::<f64>() / out.len() as f64;
                    sum_sq += out.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
                    count += out.len();
                }
            }
        }
        let mean = sum / count as f64;
        let var = sum_sq / count as f64 - mean * mean;
        self.shift = mean;
        self.scale = if var > 1e-24 { var.sqrt() } else { 1.0 };
    }
}

/// One input vector x ~ N(0, I), rounded to f32 (what the table stores) so
/// targets are an exact function of the stored inputs.
fn draw_x(dim: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..dim)
        .map(|_| rng.sample::<f64, _>(StandardNormal) as f32 as f64)
        .collect()
}

/// Softmax of `logits / temperature`, computed stably.
fn softmax(logits: &[f64], temperature: f64) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits
        .iter()
        .map(|l| ((l - max) / temperature).exp())
        .collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&q| q > 0.0)
        .map(|q| q * q.ln())
        .sum::<f64>()
}

/// Draws a class from probabilities `p`.
fn sample_class(p: &[f64], rng: &mut ChaCha8Rng) -> u32 {
    let u: f64 = rng.gen();
    let mut acc = 0.0;
    for (k, q) in p.iter().enumerate() {
        acc += q;
        if u < acc {
            return k as u32;
        }
    }
    (p.len() - 1) as u32
}

/// One split's table and the mean loss the teacher itself achieves on it.
fn generate(
    stage: &TeacherJob,
    teacher: &Teacher,
    split: Split,
    rows: usize,
    ctx: &StageContext,
) -> Result<(Table, f64), StageError> {
    let index = match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    };
    let mut x_rng = seeded_rng(stage.seed, stream::INPUTS + index);
    let mut y_rng = seeded_rng(stage.seed, stream::NOISE + index);
    let mut xs = Vec::with_capacity(rows * stage.input_dim);
    let mut loss = 0.0;
    let message = format!("{} examples", split.name());
    let targets = match stage.head {
        Head::Regression { noise_std } => {
            let mut ys = Vec::with_capacity(rows);
            for i in 0..rows {
                tick(ctx, i, rows, &message)?;
                let x = draw_x(stage.input_dim, &mut x_rng);
                let clean = teacher.output(&x)[0];
                let noise = noise_std * y_rng.sample::<f64, _>(StandardNormal);
                let y = (clean + noise) as f32;
                loss += (y as f64 - clean).powi(2);
                ys.push(y);
                xs.extend(x.iter().map(|&v| v as f32));
            }
            Targets::Regression(ys)
        }
        Head::Classification { temperature, .. } => {
            let mut ys = Vec::with_capacity(rows);
            for i in 0..rows {
                tick(ctx, i, rows, &message)?;
                let x = draw_x(stage.input_dim, &mut x_rng);
                let p = softmax(&teacher.output(&x), temperature);
                let y = sample_class(&p, &mut y_rng);
                loss -= p[y as usize].ln();
                ys.push(y);
                xs.extend(x.iter().map(|&v| v as f32));
            }
            Targets::Classes(ys)
        }
    };
    tick(ctx, rows, rows, &message)?;
    let table = Table {
        x: xs,
        rows,
        cols: stage.input_dim,
        y: targets,
    };
    Ok((table, loss / rows.max(1) as f64))
}

/// Monte Carlo estimate of E_x[H(softmax)] and its standard error.
fn bayes_cross_entropy(stage: &TeacherJob, teacher: &Teacher, temperature: f64) -> (f64, f64) {
    // Continue the calibration stream past the draws used for standardising.
    let mut rng = seeded_rng(stage.seed, stream::CALIBRATION);
    for _ in 0..CALIBRATION_DRAWS {
        draw_x(stage.input_dim, &mut rng);
    }
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    for _ in 0..BAYES_DRAWS {
        let x = draw_x(stage.input_dim, &mut rng);
        let h = entropy(&softmax(&teacher.output(&x), temperature));
        sum += h;
        sum_sq += h * h;
    }
    let n = BAYES_DRAWS as f64;
    let mean = sum / n;
    let var = (sum_sq / n - mean * mean).max(0.0);
    (mean, (var / n).sqrt())
}

impl Job for TeacherJob {
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let teacher = Teacher::new(self);
        let out = ctx.out_dir();
        let mut held_out_loss = [0.0; 3];
        for (i, (split, rows)) in [
            (Split::Val, self.val),
            (Split::Test, self.test),
            (Split::Train, self.n),
        ]
        .into_iter()
        .enumerate()
        {
            let (table, loss) = generate(self, &teacher, split, rows, ctx)?;
            write_table(out, split, &table, Columns::Features)?;
            held_out_loss[i] = loss;
        }

        let (task, classes) = match self.head {
            Head::Regression { .. } => (Task::Regression, None),
            Head::Classification { classes, .. } => (Task::Classification, Some(classes)),
        };
        let mut meta = new_meta(KIND.name, task, [self.n, self.val, self.test]);
        meta.input_dim = Some(self.input_dim);
        meta.classes = classes;
        let extra = &mut meta.extra;
        extra.insert("teacher_width".into(), json(self.width));
        extra.insert("teacher_depth".into(), json(self.depth));
        extra.insert("activation".into(), json("tanh"));
        extra.insert("seed".into(), json(self.seed));
        // The teacher's own loss on the test split: what a perfect model scores there.
        extra.insert("teacher_test_loss".into(), json(held_out_loss[1]));
        match self.head {
            Head::Regression { noise_std } => {
                meta.irreducible_loss = Some(noise_std * noise_std);
                meta.extra.insert("noise_std".into(), json(noise_std));
            }
            Head::Classification { temperature, .. } => {
                ctx.progress(0, 1, "estimating the Bayes cross-entropy");
                let (mean, stderr) = bayes_cross_entropy(self, &teacher, temperature);
                meta.irreducible_loss = Some(mean);
                meta.extra.insert("temperature".into(), json(temperature));
                meta.extra
                    .insert("irreducible_loss_stderr".into(), json(stderr));
                meta.extra
                    .insert("irreducible_loss_draws".into(), json(BAYES_DRAWS));
            }
        }
        write_meta(out, &meta)?;
        Ok(())
    }
}
