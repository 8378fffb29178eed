//! Cache keys: everything that decides a stage instance's outputs, hashed.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Bumped when the engine changes how it runs stages or lays out entries.
const ENGINE_VERSION: u32 = 1;

/// A file a stage reads, with the hash of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub blake3: String,
}

/// Everything that affects an instance's outputs. Same key, same outputs: the
/// fingerprint is the blake3 hash of this struct's canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub engine: u32,
    pub kind: String,
    pub kind_version: u32,
    /// Resolved parameters as canonical JSON (sorted keys).
    pub params: serde_json::Value,
    /// Fingerprints of the input instances, in input order.
    pub inputs: Vec<String>,
    pub files: Vec<FileHash>,
}

impl CacheKey {
    pub fn new(
        kind: &str,
        kind_version: u32,
        params: serde_json::Value,
        inputs: Vec<String>,
        files: Vec<FileHash>,
    ) -> Self {
        CacheKey {
            engine: ENGINE_VERSION,
            kind: kind.to_string(),
            kind_version,
            params,
            inputs,
            files,
        }
    }

    /// The fingerprint: 128 bits of blake3, in hex.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("cache keys serialize");
        let hash = blake3::hash(&bytes);
        hash.to_hex()[..32].to_string()
    }

    /// Why this key differs from an earlier one of the same instance, in words.
    pub fn change_from(&self, before: &CacheKey) -> String {
        if self.kind != before.kind
            || self.kind_version != before.kind_version
            || self.engine != before.engine
        {
            return "stage kind version changed".into();
        }
        if self.params != before.params {
            return "params changed".into();
        }
        if self.files != before.files {
            let changed: Vec<&str> = self
                .files
                .iter()
                .filter(|f| !before.files.contains(f))
                .map(|f| f.path.as_str())
                .collect();
            return format!("file changed: {}", changed.join(", "));
        }
        if self.inputs != before.inputs {
            return "input changed".into();
        }
        "not in the store".into()
    }
}

/// blake3 of a file's content, in hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_every_field() {
        let base = CacheKey::new("command", 1, serde_json::json!({"a": 1}), vec![], vec![]);
        let fp = base.fingerprint();
        assert_eq!(fp, base.clone().fingerprint());
        let mut other = base.clone();
        other.params = serde_json::json!({"a": 2});
        assert_ne!(other.fingerprint(), fp);
        let mut other = base.clone();
        other.inputs.push("x".into());
        assert_ne!(other.fingerprint(), fp);
        assert_eq!(other.change_from(&base), "input changed");
        let mut other = base.clone();
        other.kind_version = 2;
        assert_ne!(other.fingerprint(), fp);
    }
}
