//! The readable view of a pipeline's latest outputs under `results/<pipeline>/`.
//!
//! Each instance's outputs are copied (hard-linked where possible) out of the
//! store, so the view survives `gc` and never points into an entry that is being
//! written: only committed entries are copied, and each instance directory is
//! swapped in with a rename.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
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
        self.dir.join(dir_name(id).as_ref())
    }

    /// The directories in the view, read with one directory listing. A run
    /// checks every cached instance's view and then prunes the view; one listing
    /// serves both instead of a `stat` per instance plus a second listing.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return listing;
        };
        for entry in dir.filter_map(Result::ok) {
            let name = entry.file_name();
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    listing.dirs.insert(name);
                }
                // Links to directories count as present, as `Path::is_dir`
                // follows them, but pruning leaves them alone.
                _ if entry.path().is_dir() => {
                    listing.linked.insert(name);
                }
                _ => {}
            }
        }
        listing
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
    /// `listing` is the view as listed before this run published into it: the
    /// directories published since are all kept.
    pub fn prune(&self, listing: &Listing, keep: &[&str]) -> io::Result<()> {
        let keep: HashSet<Cow<str>> = keep.iter().map(|id| dir_name(id)).collect();
        for name in &listing.dirs {
            if !name.to_str().is_some_and(|n| keep.contains(n)) {
                match fs::remove_dir_all(self.dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The directories of a results view ([`ResultsView::list`]).
#[derive(Debug, Default)]
pub struct Listing {
    /// Directory names.
    dirs: HashSet<OsString>,
    /// Names of links to directories.
    linked: HashSet<OsString>,
}

impl Listing {
    /// Whether the view holds a directory for an instance.
    pub fn has(&self, id: &str) -> bool {
        let name = dir_name(id);
        let name = OsStr::new(name.as_ref());
        self.dirs.contains(name) || self.linked.contains(name)
    }
}

fn dir_name(id: &str) -> Cow<'_, str> {
    if id.contains(['/', '\\', '\0']) {
        Cow::Owned(id.replace(['/', '\\', '\0'], "_"))
    } else {
        Cow::Borrowed(id)
    }
}
