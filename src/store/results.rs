//! The readable view of a pipeline's latest outputs under `results/<pipeline>/`.
//!
//! Each instance's outputs are copied out of the store, so the view survives
//! `gc`, never points into an entry that is being written (only committed
//! entries are copied, and each instance directory is swapped in with a
//! rename), and editing a result never changes the cached entry that
//! downstream stages read. Copies, not hard links: a hard link is the same
//! file, so `echo x >> results/p/id/file` would change the entry. The copy is
//! `std::fs::copy`, which on Linux uses `copy_file_range`, so filesystems that
//! support it (btrfs, XFS with reflink) share the blocks copy-on-write instead
//! of duplicating them; the crate forbids `unsafe`, so there is no direct
//! `FICLONE` call.
//!
//! Directory names are the instance ids made into valid, distinct file names
//! ([`dir_name`]); the readable id is in `run.json`.

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

    /// Directory of an instance (see [`dir_name`]).
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
    /// On error the staging copy is removed (a full disk leaves no partial
    /// copy behind) and the error names the file.
    pub fn publish(&self, id: &str, out_dir: &Path) -> io::Result<()> {
        let target = self.instance_dir(id);
        let name = dir_name(id);
        let staging = self.dir.join(format!(".{name}.new"));
        let old = self.dir.join(format!(".{name}.old"));
        let _ = fs::remove_dir_all(&staging);
        if let Err(e) = copy_tree(out_dir, &staging) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let _ = fs::remove_dir_all(&old);
        if target.exists() {
            fs::rename(&target, &old).map_err(|e| at(&target, e))?;
        }
        fs::rename(&staging, &target).map_err(|e| at(&target, e))?;
        let _ = fs::remove_dir_all(&old);
        Ok(())
    }

    /// Flushes the view's directory, once after a run published into it, so
    /// the renames of its instance directories are on disk.
    pub fn sync(&self) -> io::Result<()> {
        super::durable::sync_dir(&self.dir)
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

/// Copies the regular files and directories under `from` into a new `to`, and
/// flushes them. `from` itself must be a directory, not a link to one.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    super::manifest::real_dir(from, "the entry's output directory")?;
    fs::create_dir_all(to).map_err(|e| at(to, e))?;
    for entry in WalkDir::new(from).follow_root_links(false).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .expect("walk stays under root");
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&dest).map_err(|e| at(&dest, e))?;
        } else if entry.file_type().is_file() {
            fs::copy(entry.path(), &dest).map_err(|e| at(&dest, e))?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file", entry.path().display()),
            ));
        }
    }
    super::durable::sync_files(to)
}

/// `e` with `path` in its message (an `io::Error` alone does not say which file).
fn at(path: &Path, e: io::Error) -> io::Error {
    super::durable::at(path, e)
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

/// Longest directory name used for an instance, in bytes (file systems allow
/// 255).
const MAX_DIR_NAME: usize = 200;

/// The directory name of an instance id: distinct ids give distinct names.
///
/// Bytes a file name cannot hold or that would be misread (`/`, `\`, NUL,
/// control characters, a leading `.`) are written `%XX`, and so are `%` and `~`
/// themselves, so escaping is reversible and `a/b` never meets `a_b`. A name
/// longer than [`MAX_DIR_NAME`] keeps a readable prefix and ends in `~` and 32
/// hex digits of the id's blake3; only shortened names contain a bare `~`, so
/// they cannot meet an escaped one.
pub fn dir_name(id: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '/' | '\\' | '%' | '~') || c.is_control();
    let escaped: Cow<str> = if id.contains(special) || id.starts_with('.') {
        let mut out = String::with_capacity(id.len() + 8);
        for (i, c) in id.char_indices() {
            if special(c) || (i == 0 && c == '.') {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(id)
    };
    if escaped.len() <= MAX_DIR_NAME {
        return escaped;
    }
    let mut cut = MAX_DIR_NAME - 33;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = blake3::hash(id.as_bytes()).to_hex();
    Cow::Owned(format!("{}~{}", &escaped[..cut], &hash[..32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_are_distinct_valid_file_names() {
        let ids = [
            "s[v=a_b]",
            "s[v=a/b]",
            "s[v=a%2Fb]",
            "s[v=a\\b]",
            "s[v=a~b]",
            ".hidden",
            "..",
        ];
        let names: Vec<String> = ids.iter().map(|id| dir_name(id).into_owned()).collect();
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{names:?}");
        for name in &names {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
        assert_eq!(dir_name("train[d=1000,width=64]"), "train[d=1000,width=64]");
    }

    #[test]
    fn long_ids_are_shortened_without_collisions() {
        let a = format!("s[v={}a]", "x".repeat(300));
        let b = format!("s[v={}b]", "x".repeat(300));
        let huge = "é".repeat(40_000);
        for id in [&a, &b, &huge] {
            let name = dir_name(id);
            assert!(name.len() <= MAX_DIR_NAME, "{} bytes", name.len());
        }
        assert_ne!(dir_name(&a), dir_name(&b));
        assert!(dir_name(&a).starts_with("s[v=xxx"));
    }
}
