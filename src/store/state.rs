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

impl PipelineState {
    fn path(store_root: &Path, pipeline: &str) -> PathBuf {
        store_root
            .join("pipelines")
            .join(format!("{pipeline}.json"))
    }

    /// The state of a pipeline, empty if it never ran here.
    pub fn load(store_root: &Path, pipeline: &str) -> PipelineState {
        fs::read(Self::path(store_root, pipeline))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Every pipeline state in the store.
    pub fn load_all(store_root: &Path) -> Vec<PipelineState> {
        let Ok(dir) = fs::read_dir(store_root.join("pipelines")) else {
            return Vec::new();
        };
        let mut states: Vec<PipelineState> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        states.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        states
    }

    /// Writes the state atomically (a temporary file renamed over the old one).
    pub fn save(&self, store_root: &Path) -> io::Result<()> {
        let path = Self::path(store_root, &self.pipeline);
        fs::create_dir_all(path.parent().expect("state path has a parent"))?;
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(tmp, path)
    }
}
