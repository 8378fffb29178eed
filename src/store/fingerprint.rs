//! Cache keys: everything that decides a stage instance's outputs, hashed.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

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
    /// Borrowed from the kind's static name while planning: no copy per instance.
    pub kind: Cow<'static, str>,
    pub kind_version: u32,
    /// Resolved parameters as canonical JSON (sorted keys).
    pub params: CanonicalJson,
    /// Fingerprints of the input instances, in input order.
    pub inputs: Vec<String>,
    pub files: Vec<FileHash>,
}

impl CacheKey {
    pub fn new(
        kind: &'static str,
        kind_version: u32,
        params: CanonicalJson,
        inputs: Vec<String>,
        files: Vec<FileHash>,
    ) -> Self {
        CacheKey {
            engine: ENGINE_VERSION,
            kind: Cow::Borrowed(kind),
            kind_version,
            params,
            inputs,
            files,
        }
    }

    /// The fingerprint: 128 bits of blake3 of the key's compact JSON, in hex.
    pub fn fingerprint(&self) -> String {
        // Streamed into the hasher, buffered so blake3 sees large updates.
        let mut hasher = blake3::Hasher::new();
        let mut writer = std::io::BufWriter::with_capacity(4096, &mut hasher);
        serde_json::to_writer(&mut writer, self).expect("cache keys serialize");
        std::io::Write::flush(&mut writer).expect("hashing cannot fail");
        drop(writer);
        hasher.finalize().to_hex()[..32].to_string()
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

/// A JSON value kept as its compact canonical text (sorted keys, no spaces).
///
/// Parameters are only ever hashed, stored and compared, never inspected, so the
/// text is all a key needs: one allocation per instance instead of a tree of
/// maps and strings, and reading a pipeline's state back parses no values. It
/// serializes as the JSON value itself, so keys hash and store exactly as a
/// `serde_json::Value` holding the same value did.
#[derive(Debug, Clone)]
pub struct CanonicalJson(Box<RawValue>);

impl CanonicalJson {
    /// Text of a table of parameters.
    pub fn of_table(table: &toml::Table) -> CanonicalJson {
        // Serialized straight into the raw value: no re-parse to validate it.
        CanonicalJson(
            serde_json::value::to_raw_value(&crate::pipeline::CanonicalTable(table))
                .expect("TOML tables serialize"),
        )
    }

    /// Text of a JSON value; its objects' keys must be sorted, as serde_json's
    /// default maps keep them.
    pub fn of_json(value: &serde_json::Value) -> CanonicalJson {
        CanonicalJson::from_text(value.to_string())
    }

    fn from_text(text: String) -> CanonicalJson {
        CanonicalJson(RawValue::from_string(text).expect("serde_json wrote valid JSON"))
    }

    /// The compact JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The value, parsed.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.text()).expect("canonical JSON parses")
    }
}

impl PartialEq for CanonicalJson {
    /// Canonical texts are equal exactly when the values are.
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Serialize for CanonicalJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CanonicalJson {
    /// Reads the value's text as written. Files written pretty-printed (manifests)
    /// hold a line break outside strings, which compact JSON never does (it
    /// escapes them inside strings), so only those are re-written compactly.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !raw.get().contains(['\n', '\r', '\t']) {
            return Ok(CanonicalJson(raw));
        }
        let value: serde_json::Value =
            serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(CanonicalJson::of_json(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_every_field() {
        let params = |v| CanonicalJson::of_json(&serde_json::json!({ "a": v }));
        let file = |path: &str, blake3: &str| FileHash {
            path: path.into(),
            blake3: blake3.into(),
        };
        let base = CacheKey::new(
            "command",
            1,
            params(1),
            vec!["in".into()],
            vec![file("data.csv", "aaaa")],
        );
        let fp = base.fingerprint();
        assert_eq!(fp, base.clone().fingerprint());
        assert_eq!(fp.len(), 32);
        // The fields, spelled out: a field added to the key without a case here
        // fails to compile.
        let CacheKey {
            engine: _,
            kind: _,
            kind_version: _,
            params: _,
            inputs: _,
            files: _,
        } = &base;
        type Change = fn(&mut CacheKey);
        let changes: [(&str, Change, &str); 9] = [
            ("engine", |k| k.engine += 1, "stage kind version changed"),
            (
                "kind",
                |k| k.kind = Cow::Borrowed("train"),
                "stage kind version changed",
            ),
            (
                "kind_version",
                |k| k.kind_version = 2,
                "stage kind version changed",
            ),
            (
                "params",
                |k| k.params = CanonicalJson::of_json(&serde_json::json!({ "a": 2 })),
                "params changed",
            ),
            (
                "inputs: another",
                |k| k.inputs.push("x".into()),
                "input changed",
            ),
            (
                "inputs: changed",
                |k| k.inputs[0] = "other".into(),
                "input changed",
            ),
            (
                "files: content",
                |k| k.files[0].blake3 = "bbbb".into(),
                "file changed: data.csv",
            ),
            (
                "files: path",
                |k| k.files[0].path = "other.csv".into(),
                "file changed: other.csv",
            ),
            (
                "files: another",
                |k| {
                    k.files.push(FileHash {
                        path: "more.csv".into(),
                        blake3: "cccc".into(),
                    })
                },
                "file changed: more.csv",
            ),
        ];
        let mut seen = vec![fp.clone()];
        for (what, change, reason) in changes {
            let mut other = base.clone();
            change(&mut other);
            let other_fp = other.fingerprint();
            assert!(
                !seen.contains(&other_fp),
                "{what}: fingerprint did not change"
            );
            seen.push(other_fp);
            assert_eq!(other.change_from(&base), reason, "{what}");
        }
        // A file dropped from the key changes it too.
        let mut other = base.clone();
        other.files.clear();
        assert_ne!(other.fingerprint(), fp);
        assert_eq!(base.change_from(&base), "not in the store");
    }

    /// A key written compactly (pipeline state) or pretty-printed (manifests)
    /// reads back equal to the key it was, with the same fingerprint.
    #[test]
    fn keys_round_trip_through_compact_and_pretty_json() {
        let params: toml::Table = toml::from_str(
            "cmd = \"echo {v} > out.txt\"\nv = 0.5\ntext = \"a\\nb\"\n[t]\nz = 1\na = []",
        )
        .unwrap();
        let key = CacheKey::new(
            "command",
            3,
            CanonicalJson::of_table(&params),
            vec!["f00".into()],
            vec![FileHash {
                path: "data.csv".into(),
                blake3: "abc".into(),
            }],
        );
        for bytes in [
            serde_json::to_vec(&key).unwrap(),
            serde_json::to_vec_pretty(&key).unwrap(),
        ] {
            let back: CacheKey = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, key);
            assert_eq!(back.fingerprint(), key.fingerprint());
            assert_eq!(back.params.to_value()["t"]["z"], 1);
        }
    }
}
