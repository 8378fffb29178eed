//! Each pipeline's latest instances, kept in the store: what `plan` compares
//! against to say why an instance must run, and what `gc` keeps.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::CacheKey;

/// One instance as of the pipeline's latest run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateEntry {
    pub fingerprint: String,
    pub key: StoredKey,
}

/// A [`CacheKey`] as the state file holds it: its JSON text, parsed only when
/// asked.
///
/// Every run reads the whole state, but only instances that must run look at
/// their old key (to say why they run); building every key of a 10,000-instance
/// state was a quarter of a no-op run. Unchanged entries are written back as
/// the same text.
#[derive(Debug, Clone)]
pub struct StoredKey(Box<RawValue>);

impl StoredKey {
    pub fn new(key: &CacheKey) -> StoredKey {
        StoredKey(serde_json::value::to_raw_value(key).expect("cache keys serialize"))
    }

    /// The key; `None` if the text is not a key (a state file from a future
    /// version), which callers treat like a missing entry.
    pub fn parse(&self) -> Option<CacheKey> {
        serde_json::from_str(self.0.get()).ok()
    }
}

impl Serialize for StoredKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(StoredKey)
    }
}

/// `.scalepipe/pipelines/<name>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineState {
    pub pipeline: String,
    pub file: String,
    pub instances: BTreeMap<String, StateEntry>,
}

/// A pipeline state file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

impl PipelineState {
    /// `.scalepipe/pipelines/<name>.json`.
    pub fn path(store_root: &Path, pipeline: &str) -> PathBuf {
        store_root
            .join("pipelines")
            .join(format!("{pipeline}.json"))
    }

    /// The state of a pipeline, empty if it never ran here. A state file that
    /// exists but cannot be read is an error, never an empty state: an empty
    /// state would let `gc` delete every entry of the pipeline.
    pub fn load(store_root: &Path, pipeline: &str) -> Result<PipelineState, StateError> {
        let path = Self::path(store_root, pipeline);
        match fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PipelineState::default()),
            Err(e) => Err(StateError {
                path,
                message: format!("cannot read it: {e}"),
            }),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<PipelineState, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError {
            path: path.to_path_buf(),
            message: format!(
                "not a pipeline state ({e}); move it away or delete it, then re-run the pipeline"
            ),
        })
    }

    /// Every pipeline state in the store, or the first file that cannot be read.
    pub fn load_all(store_root: &Path) -> Result<Vec<PipelineState>, StateError> {
        let dir_path = store_root.join("pipelines");
        let dir = match fs::read_dir(&dir_path) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StateError {
                    path: dir_path,
                    message: format!("cannot list it: {e}"),
                })
            }
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut states = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = fs::read(&path).map_err(|e| StateError {
                path: path.clone(),
                message: format!("cannot read it: {e}"),
            })?;
            states.push(Self::parse(&path, &bytes)?);
        }
        states.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        Ok(states)
    }

    /// Writes the state atomically and durably (see [`super::durable`]).
    pub fn save(&self, store_root: &Path) -> io::Result<()> {
        let path = Self::path(store_root, &self.pipeline);
        let dir = path.parent().expect("state path has a parent");
        fs::create_dir_all(dir).map_err(|e| super::durable::at(dir, e))?;
        super::durable::write_atomic(&path, &serde_json::to_vec(self).map_err(io::Error::other)?)
    }
}
