//! A full disk, for real: the workspace lives on a small tmpfs (the tests run as
//! root, as the Slurm tests require), a stage fills it, and the run must fail
//! clearly, leave no temporary file and commit nothing partial; once space is
//! freed, the next run completes and `verify` passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::Workspace;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`. A
    /// failure fails the test: it never skips.
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (the tests run as root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Every path under `root` (relative) whose name marks a temporary file or
/// directory of the engine: `tmp/` entries, `.<name>.tmp.<pid>.<n>` of atomic
/// writes, `.<id>.new`/`.<id>.old` of the results view, `<name>.json.<pid>`.
fn leftovers(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            (rel.starts_with(".scalepipe/tmp/") && rel.matches('/').count() == 2)
                || name.contains(".tmp.")
                || name.ends_with(".new")
                || name.ends_with(".old")
                || name.rsplit_once(".json.").is_some_and(|(_, pid)| {
                    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect()
}

#[test]
fn a_full_disk_fails_clearly_leaves_no_temporary_file_and_the_run_after_freeing_space_completes() {
    let ws = Workspace::new();
    let _fs = Tmpfs::mount(ws.path(), "2m");
    let root = ws.path().display().to_string();
    // `fill` writes its output, then (once) fills the disk from outside its
    // output directory and exits 0: the engine's own writes (the manifest,
    // the results copy) are what meet the full disk.
    ws.write(
        "p.toml",
        &format!(
            r#"[pipeline]
name = "disk"
[stages.small]
kind = "command"
cmd = "echo small > small.txt"
[stages.fill]
kind = "command"
inputs = ["small"]
cmd = "echo ok > out.txt; if [ ! -e {root}/filled ]; then touch {root}/filled; head -c 4000000 /dev/zero > {root}/filler 2>/dev/null; fi; true"
[stages.after]
kind = "command"
inputs = ["fill"]
cmd = "echo after > after.txt"
"#
        ),
    );
    let out = ws.run(&["run", "p.toml", "--jobs", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    // The commit names the file it could not write.
    assert!(
        out.stderr
            .contains("manifest.json: No space left on device"),
        "{}",
        out.stderr
    );
    assert!(ws.join("filler").is_file(), "the disk was not filled");
    assert_eq!(leftovers(ws.path()), Vec::<String>::new());
    // Only `small` is committed, and it is whole.
    assert_eq!(ws.entries().len(), 1, "{:?}", ws.entries());
    ws.run(&["verify"]).success();
    assert!(
        ws.join(".scalepipe/failed").is_dir(),
        "the failed attempt keeps its log"
    );

    // Space is freed; the failed attempt's copy stays, and must not matter.
    std::fs::remove_file(ws.join("filler")).unwrap();
    let again = ws
        .run(&["run", "p.toml", "--jobs", "1", "--json"])
        .success();
    let summary = again.json();
    assert_eq!(
        crate::harness::ids(&summary, "executed"),
        vec!["after", "fill"],
        "{summary}"
    );
    assert_eq!(ws.read("results/disk/after/after.txt"), "after\n");
    assert_eq!(ws.read("results/disk/small/small.txt"), "small\n");
    assert_eq!(ws.entries().len(), 3);
    ws.run(&["verify"]).success();
    assert_eq!(leftovers(ws.path()), Vec::<String>::new());
}

#[test]
fn a_results_copy_that_does_not_fit_names_the_file_and_leaves_no_partial_copy() {
    let ws = Workspace::new();
    let _fs = Tmpfs::mount(ws.path(), "3m");
    // The entry (1.2 MB) fits; its copy into `results/` does not.
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"copy\"\n[stages.big]\nkind = \"command\"\ncmd = \"head -c 1200000 /dev/urandom > big.bin\"\n",
    );
    // A filler leaves 1.8 MB: the entry fits, the copy does not.
    let filler = free_bytes(ws.path()).saturating_sub(1_800_000);
    std::fs::write(ws.join("filler"), vec![0u8; filler as usize]).unwrap();
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot publish results of big")
            && out.stderr.contains("big.bin: No space left on device"),
        "{}",
        out.stderr
    );
    assert_eq!(leftovers(ws.path()), Vec::<String>::new());
    ws.run(&["verify"]).success();
    std::fs::remove_file(ws.join("filler")).unwrap();
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(
        std::fs::metadata(ws.join("results/copy/big/big.bin"))
            .unwrap()
            .len(),
        1_200_000
    );
    assert_eq!(leftovers(ws.path()), Vec::<String>::new());
}

/// Bytes free on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}
