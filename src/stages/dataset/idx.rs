//! `dataset.idx`: an image file and a label file in the IDX format of MNIST and
//! Fashion-MNIST, as a classification table with pixels scaled to [0, 1].
//!
//! An IDX file is two zero bytes, a type code (0x08: unsigned bytes, the only one
//! image datasets use), the number of dimensions, each dimension as a big-endian
//! u32, then the values. Images are `count x rows x cols`, labels `count`. Every
//! header is checked against the file size and the two counts against each other,
//! so a truncated download or a mismatched pair is reported, not half-read.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::split::{train_size, Count, SplitSpec};
use super::subsample::nested_subsample;
use super::{json, new_meta, InputFile};
use crate::data::{write_meta, write_table, Columns, DataError, Split, Table, Targets, Task};
use crate::kinds_doc::ParamDoc;
use crate::stages::{
    parse_params, ConfigureContext, Job, Kind, ParamError, StageContext, StageError,
};

pub const KIND: Kind = Kind {
    name: "dataset.idx",
    version: 1,
    takes_seed: true,
    maps_inputs: false,
    inherits_inputs_of: None,
    names_pipeline_file: false,
    configure,
};

/// Type code of unsigned bytes.
const UBYTE: u8 = 0x08;

/// The reference of `dataset.idx`'s parameters ([`crate::kinds_doc`]).
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc::new(
        "images",
        "string",
        "required",
        "IDX file of u8 images (e.g. train-images-idx3-ubyte).",
    ),
    ParamDoc::new(
        "labels",
        "string",
        "required",
        "IDX file of u8 labels, one per image.",
    ),
    ParamDoc::new(
        "split",
        "table {train, val, test}",
        "val = test = 10%",
        "Counts of examples (integers) or fractions of the file (floats).",
    ),
    ParamDoc::new(
        "n",
        "integer",
        "the whole training pool",
        "Training examples D, a nested subsample.",
    ),
    ParamDoc::new(
        "seed",
        "integer",
        "the pipeline's seed",
        "Seeds the draw; same parameters and seed give byte-identical files.",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    images: String,
    labels: String,
    #[serde(default)]
    split: SplitSpec,
    /// Training examples D (default: the whole training pool).
    n: Option<Count>,
    seed: u64,
}

#[derive(Debug)]
struct IdxJob {
    images: InputFile,
    labels: InputFile,
    split: SplitSpec,
    n: Option<u64>,
    seed: u64,
}

fn configure(params: &toml::Table, cx: &ConfigureContext) -> Result<Box<dyn Job>, ParamError> {
    let p: Params = parse_params(params)?;
    p.split.validate()?;
    Ok(Box::new(IdxJob {
        images: InputFile::existing("images", &p.images, cx)?,
        labels: InputFile::existing("labels", &p.labels, cx)?,
        split: p.split,
        n: p.n.map(|c| c.0),
        seed: p.seed,
    }))
}

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses an IDX file's bytes; `path` only names the file in errors.
pub fn parse_idx(path: &Path, bytes: Vec<u8>) -> Result<Idx, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(DataError::invalid(
            path,
            "the file is gzip-compressed; decompress it first (gunzip)",
        ));
    }
    if bytes.len() < 4 {
        return Err(DataError::invalid(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::invalid(
            path,
            format!(
                "bad magic number 0x{:02x}{:02x}{:02x}{:02x}: an IDX file starts with two zero bytes, a type code and the number of dimensions",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != UBYTE {
        return Err(DataError::invalid(
            path,
            format!(
                "data type 0x{:02x} is not supported (only unsigned bytes, 0x08, as in MNIST)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err(DataError::invalid(
            path,
            format!(
                "the header declares {ndims} dimension(s) but the file has {} bytes",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let at = 4 + 4 * i;
            u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let actual = bytes.len() - header;
    if expected != Some(actual) {
        let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(DataError::invalid(
            path,
            format!(
                "the header says {} = {} bytes of data but the file holds {actual} (truncated or not an IDX file?)",
                shape.join(" x "),
                expected.map_or("too many".to_string(), |e| e.to_string()),
            ),
        ));
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(Idx { dims, data })
}

fn read_idx(path: &Path) -> Result<Idx, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_idx(path, bytes)
}

impl Job for IdxJob {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.images.path.clone(), self.labels.path.clone()]
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        ctx.progress(0, 2, "reading");
        let images = read_idx(&self.images.path)?;
        let labels = read_idx(&self.labels.path)?;
        if images.dims.len() < 2 {
            return Err(DataError::invalid(
                &self.images.path,
                format!(
                    "an image file has at least 2 dimensions (count, pixels...), this one has {}",
                    images.dims.len()
                ),
            )
            .into());
        }
        if labels.dims.len() != 1 {
            return Err(DataError::invalid(
                &self.labels.path,
                format!(
                    "a label file has 1 dimension (count), this one has {}",
                    labels.dims.len()
                ),
            )
            .into());
        }
        let count = images.dims[0];
        if labels.dims[0] != count {
            return Err(StageError::msg(format!(
                "{} holds {count} images but {} holds {} labels",
                self.images.path.display(),
                self.labels.path.display(),
                labels.dims[0]
            )));
        }
        if count == 0 {
            return Err(DataError::invalid(&self.images.path, "the file holds no images").into());
        }
        ctx.log(&format!(
            "read {} and {}: {count} images",
            self.images.written, self.labels.written
        ));
        let pixels: usize = images.dims[1..].iter().product();
        let classes = labels.data.iter().copied().max().unwrap_or(0) as usize + 1;

        let sizes = self
            .split
            .resolve(count)
            .map_err(|m| DataError::invalid(&self.images.path, m))?;
        let n = train_size(self.n, &sizes, "n", "examples")
            .map_err(|m| DataError::invalid(&self.images.path, m))?;
        let sub = nested_subsample(count, &sizes, n, self.seed);
        ctx.progress(1, 2, "writing splits");
        for (split, idx) in [
            (Split::Train, &sub.train),
            (Split::Val, &sub.val),
            (Split::Test, &sub.test),
        ] {
            let mut x = Vec::with_capacity(idx.len() * pixels);
            for &i in idx {
                let image = &images.data[i * pixels..(i + 1) * pixels];
                x.extend(image.iter().map(|&p| p as f32 / 255.0));
            }
            let y = idx.iter().map(|&i| labels.data[i] as u32).collect();
            let table = Table {
                x,
                rows: idx.len(),
                cols: pixels,
                y: Targets::Classes(y),
            };
            write_table(ctx.out_dir(), split, &table, Columns::Features)?;
        }

        let mut meta = new_meta(KIND.name, Task::Classification, [n, sizes.val, sizes.test]);
        meta.input_dim = Some(pixels);
        meta.classes = Some(classes);
        meta.sources.push(self.images.source()?);
        meta.sources.push(self.labels.source()?);
        meta.extra
            .insert("image_shape".into(), json(&images.dims[1..]));
        meta.extra.insert("pool".into(), json(count));
        meta.extra
            .insert("train_pool".into(), json(sizes.train_pool));
        meta.extra.insert("seed".into(), json(self.seed));
        write_meta(ctx.out_dir(), &meta)?;
        ctx.progress(2, 2, "done");
        Ok(())
    }
}
