//! The progress file a Slurm worker keeps beside its spec
//! (`<batch>/<task>.progress.json`), owned here: the latest position, length
//! and message its stage reported. The submitter reads it for each running job
//! on each poll and turns changes into the same [`Event::Progress`] a local
//! run emits, so progress reaches the user without one more call to Slurm's
//! controller.
//!
//! The worker replaces the file atomically (a reader sees the old or the new
//! progress, never a torn one) and at most every [`MIN_INTERVAL`], except when
//! the stage passes another tenth of its work or reaches its end, so the
//! tenths the terminal's progress lines mark are not skipped by the throttle.
//!
//! [`Event::Progress`]: crate::executor::Event::Progress

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Writes closer together than this are dropped (but see [`ProgressWriter`]).
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// `<task>.progress.json`: what `StageContext::progress` last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerProgress {
    pub pos: u64,
    pub len: u64,
    pub message: String,
    /// Seconds since the worker started, when the stage reported this (the
    /// submitter's ETA is computed from it, not from when it saw the job run).
    pub elapsed_s: f64,
}

/// Where a spec's progress file goes: beside it.
pub fn progress_path(spec: &Path) -> PathBuf {
    spec.with_extension("progress.json")
}

/// Replaces the progress file atomically: written to a hidden temporary file
/// beside it, then renamed over it. Not synced to disk: it is a display, and a
/// crash loses nothing the run needs.
pub fn write_progress(path: &Path, progress: &WorkerProgress) -> std::io::Result<()> {
    let mut json = serde_json::to_vec(progress).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let written = std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The progress a worker left, `None` before its first write (or if the file
/// cannot be read: progress is a display, never a reason to fail a run).
pub fn read_progress(path: &Path) -> Option<WorkerProgress> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The worker's side: decides which reports are written.
pub struct ProgressWriter {
    path: PathBuf,
    interval: Duration,
    started: Instant,
    /// When the file was last written and the tenth of the work it showed.
    last: Mutex<Option<(Instant, u64, u64)>>,
}

impl ProgressWriter {
    /// Writes to `path` at most every [`MIN_INTERVAL`] (tenths and the end aside).
    pub fn new(path: PathBuf) -> Self {
        Self::with_interval(path, MIN_INTERVAL)
    }

    pub fn with_interval(path: PathBuf, interval: Duration) -> Self {
        ProgressWriter {
            path,
            interval,
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }

    /// Called with each report of the stage; writes it when the throttle lets it.
    /// A write that fails is dropped (the next one may succeed).
    pub fn report(&self, pos: u64, len: u64, message: &str) {
        let tenth = (pos.min(len) * 10).checked_div(len).unwrap_or(0);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = match *last {
            None => true,
            Some((at, last_len, last_tenth)) => {
                at.elapsed() >= self.interval
                    || len != last_len
                    || tenth > last_tenth
                    || (pos >= len && len > 0)
            }
        };
        if !due {
            return;
        }
        *last = Some((Instant::now(), len, tenth));
        let progress = WorkerProgress {
            pos,
            len,
            message: message.to_string(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        let _ = write_progress(&self.path, &progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_file_round_trips_beside_its_spec() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("3.json");
        let path = progress_path(&spec);
        assert_eq!(path, dir.path().join("3.progress.json"));
        assert_eq!(read_progress(&path), None);

        let progress = WorkerProgress {
            pos: 40,
            len: 100,
            message: "loss 1.2345 D 640".into(),
            elapsed_s: 1.25,
        };
        write_progress(&path, &progress).unwrap();
        assert_eq!(read_progress(&path), Some(progress));

        // Replaced, not appended to.
        let later = WorkerProgress {
            pos: 100,
            len: 100,
            message: "done \"quoted\"".into(),
            elapsed_s: 3.5,
        };
        write_progress(&path, &later).unwrap();
        assert_eq!(read_progress(&path), Some(later));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["3.progress.json"]);

        // A damaged file reads as no progress.
        std::fs::write(&path, "{\"pos\": 4").unwrap();
        assert_eq!(read_progress(&path), None);
    }

    #[test]
    fn writer_keeps_each_tenth_and_the_end_but_drops_fast_reports_between() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.progress.json");
        // An interval no test run reaches, so what is dropped is dropped.
        let writer = ProgressWriter::with_interval(path.clone(), Duration::from_secs(3600));
        let read = || read_progress(&path).map(|p| (p.pos, p.message));

        writer.report(1, 100, "first");
        assert_eq!(read(), Some((1, "first".into())));
        // Within the interval and the same tenth: dropped.
        writer.report(5, 100, "same tenth");
        assert_eq!(read(), Some((1, "first".into())));
        // A new tenth is written at once.
        writer.report(10, 100, "tenth");
        assert_eq!(read(), Some((10, "tenth".into())));
        writer.report(11, 100, "dropped");
        assert_eq!(read(), Some((10, "tenth".into())));
        // The end is written at once.
        writer.report(100, 100, "end");
        assert_eq!(read(), Some((100, "end".into())));
        // A new phase (another length) too.
        writer.report(0, 3, "figures");
        assert_eq!(read(), Some((0, "figures".into())));

        // After the interval, any report is written.
        let writer = ProgressWriter::with_interval(path.clone(), Duration::from_millis(50));
        writer.report(1, 100, "a");
        std::thread::sleep(Duration::from_millis(60));
        writer.report(2, 100, "b");
        assert_eq!(read(), Some((2, "b".into())));
    }
}
