//! The readable view of a pipeline's latest outputs under `results/<pipeline>/`.
//!
//! Each instance's outputs are copied (hard-linked where possible) out of the
//! store, so the view survives `gc` and never points into an entry that is being
//! written: only committed entries are copied, and each instance directory is
//! swapped in with a rename.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// `results/<pipeline>/`.
#[derive(Debug, Clone)]
pub struct ResultsView {
    dir: PathBuf,
}

impl ResultsView {
    pub fn new(workspace: &Path, pipeline: &str) -> ResultsView {
        ResultsView {
            dir: workspace.join("results").join(pipeline),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory name of an instance (ids may hold `/` from string values).
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.dir.join(dir_name(id))
    }

    /// Names of the directories in the view, read with one directory listing
    /// (links are followed, as `Path::is_dir` does). A run checks every cached
    /// instance's view; one listing replaces a `stat` per instance.
    pub fn present(&self) -> HashSet<String> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return HashSet::new();
        };
        dir.filter_map(Result::ok)
            .filter(|e| match e.file_type() {
                Ok(t) if t.is_symlink() => e.path().is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => e.path().is_dir(),
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Whether an instance's directory is among `present` (from [`Self::present`]).
    pub fn is_present(present: &HashSet<String>, id: &str) -> bool {
        if id.contains(['/', '\\', '\0']) {
            present.contains(&dir_name(id))
        } else {
            present.contains(id)
        }
    }

    /// Replaces an instance's view with the committed outputs in `out_dir`.
    pub fn publish(&self, id: &str, out_dir: &Path) -> io::Result<()> {
        let target = self.instance_dir(id);
        let name = dir_name(id);
        let staging = self.dir.join(format!(".{name}.new"));
        let old = self.dir.join(format!(".{name}.old"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        for entry in WalkDir::new(out_dir).min_depth(1) {
            let entry = entry.map_err(io::Error::other)?;
            let rel = entry
                .path()
                .strip_prefix(out_dir)
                .expect("walk stays under root");
            let dest = staging.join(rel);
            if entry.file_type().is_dir() {
                fs::create_dir_all(&dest)?;
            } else if fs::hard_link(entry.path(), &dest).is_err() {
                fs::copy(entry.path(), &dest)?;
            }
        }
        let _ = fs::remove_dir_all(&old);
        if target.exists() {
            fs::rename(&target, &old)?;
        }
        fs::rename(&staging, &target)?;
        let _ = fs::remove_dir_all(&old);
        Ok(())
    }

    /// Removes instance directories that are not among `keep` (instances that
    /// left the pipeline), leaving other files such as `run.json` alone.
    pub fn prune(&self, keep: &[&str]) -> io::Result<()> {
        let keep: HashSet<String> = keep.iter().map(|id| dir_name(id)).collect();
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type()?.is_dir() && !keep.contains(&name) {
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

fn dir_name(id: &str) -> String {
    id.replace(['/', '\\', '\0'], "_")
}
