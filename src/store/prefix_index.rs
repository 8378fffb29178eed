//! The prefix index: committed entries grouped by the prefix they share
//! ([`crate::stages::Job::prefix`], a WSD run's stable phase), so that an
//! instance finds every entry it could continue from, whichever pipeline or
//! run committed it, without listing the cache.
//!
//! `.scalepipe/prefixes/<prefix fp>/<entry fp>` is an empty file per entry. It
//! is only a hint: a name whose entry is gone (quarantine) is passed over until
//! `gc` prunes it, and a lost name only costs the reuse.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::Store;

impl Store {
    fn prefix_dir(&self, prefix: &str) -> PathBuf {
        self.root().join("prefixes").join(prefix)
    }

    /// Records that the committed entry `fingerprint` has the prefix `prefix`.
    pub fn index_prefix(&self, prefix: &str, fingerprint: &str) -> io::Result<()> {
        let dir = self.prefix_dir(prefix);
        fs::create_dir_all(&dir)?;
        fs::File::create(dir.join(fingerprint)).map(drop)
    }

    /// Committed entries recorded under `prefix`, sorted.
    pub fn prefix_members(&self, prefix: &str) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.prefix_dir(prefix)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|fp| self.contains(fp))
            .collect();
        names.sort();
        names
    }

    /// Removes the names of entries that are gone, and prefixes left empty
    /// (`gc` calls it after removing entries).
    pub fn prune_prefixes(&self) -> io::Result<()> {
        let Ok(prefixes) = fs::read_dir(self.root().join("prefixes")) else {
            return Ok(());
        };
        for prefix in prefixes {
            let dir = prefix?.path();
            let mut left = 0;
            for name in fs::read_dir(&dir)? {
                let name = name?;
                match name.file_name().to_str() {
                    Some(fp) if self.contains(fp) => left += 1,
                    _ => fs::remove_file(name.path())?,
                }
            }
            if left == 0 {
                fs::remove_dir(&dir)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_committed_entries_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        assert!(store.prefix_members("p").is_empty());
        for fp in ["b", "a", "gone"] {
            store.index_prefix("p", fp).unwrap();
        }
        for fp in ["a", "b"] {
            let entry = store.entry_dir(fp);
            fs::create_dir_all(&entry).unwrap();
            fs::write(entry.join("manifest.json"), "{}").unwrap();
        }
        assert_eq!(store.prefix_members("p"), ["a", "b"]);
        assert!(store.prefix_members("q").is_empty());

        store.index_prefix("q", "gone").unwrap();
        store.prune_prefixes().unwrap();
        let prefixes = store.root().join("prefixes");
        assert!(!prefixes.join("p").join("gone").exists());
        assert!(prefixes.join("p").join("a").exists());
        assert!(!prefixes.join("q").exists(), "an empty prefix is removed");
    }
}
