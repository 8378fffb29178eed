//! Progress bars (indicatif) and per-stage lines on stderr.
//!
//! On a terminal: an overall bar plus one bar per running stage, with finished
//! stages printed above them. Elsewhere (CI logs, pipes, `--json`): no bars, but a
//! progress line per running stage each time it passes another tenth of its work,
//! with an ETA. Warnings from stages are printed in both cases.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::executor::{Event, Outcome};

/// Shows a run on stderr.
pub struct TerminalReporter {
    multi: MultiProgress,
    tty: bool,
    overall: Mutex<Option<ProgressBar>>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// Without bars: when each running stage started and the last tenth printed.
    lines: Mutex<HashMap<String, (Instant, u64)>>,
    /// How long a stage runs before it gets progress lines.
    quiet_start: Duration,
    quiet: bool,
}

/// Work counted in fewer steps than this (a few figures) gets no progress lines.
const MIN_LINE_STEPS: u64 = 10;

/// A stage gets progress lines only once it has run this long: quick stages
/// (most fits, small models) would fill a log with lines nobody waits for.
/// `SCALEPIPE_PROGRESS_AFTER` (seconds) changes it.
const QUIET_START: Duration = Duration::from_secs(2);

fn quiet_start() -> Duration {
    std::env::var("SCALEPIPE_PROGRESS_AFTER")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(QUIET_START)
}

/// A progress line for a stage `elapsed` into its work: `40% 400/1000 msg (eta 3s)`.
fn progress_line(id: &str, pos: u64, len: u64, message: &str, elapsed: Duration) -> String {
    let fraction = pos as f64 / len.max(1) as f64;
    let eta = if pos > 0 && pos < len {
        let left = elapsed.as_secs_f64() * (1.0 / fraction - 1.0);
        format!(" (eta {})", crate::numfmt::duration(left))
    } else {
        String::new()
    };
    format!(
        "  {id}: {:.0}% {pos}/{len} {message}{eta}",
        fraction * 100.0
    )
}

impl TerminalReporter {
    /// `quiet` keeps only failures (used with `--json`).
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        TerminalReporter {
            multi: MultiProgress::with_draw_target(target),
            tty,
            overall: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
            lines: Mutex::new(HashMap::new()),
            quiet_start: quiet_start(),
            quiet,
        }
    }

    fn line(&self, text: &str) {
        if self.tty {
            self.multi.suspend(|| eprintln!("{text}"));
        } else {
            eprintln!("{text}");
        }
    }

    pub fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { total, to_run } => {
                if !self.quiet {
                    self.line(&format!(
                        "{total} stage instances: {to_run} to run, {} cached",
                        total - to_run
                    ));
                }
                if self.tty && *to_run > 0 {
                    let bar = self.multi.add(ProgressBar::new(*to_run as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{elapsed:>6} [{bar:30}] {pos}/{len} stages {msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    *self.overall.lock().expect("lock") = Some(bar);
                }
            }
            Event::Cached { .. } => {}
            Event::Submitted { stage, job, count } => {
                if !self.quiet {
                    let what = if *count > 1 {
                        format!("{count} instances of {stage} as Slurm array job {job}")
                    } else {
                        format!("1 instance of {stage} as Slurm job {job}")
                    };
                    self.line(&format!("  submitted {what}"));
                }
            }
            Event::Queue { queued, running } => {
                let text = format!("slurm: {queued} queued, {running} running");
                match self.overall.lock().expect("lock").as_ref() {
                    Some(bar) => bar.set_message(text),
                    None => self.line(&format!("  {text}")),
                }
            }
            Event::StageStarted { id, threads } => {
                if self.tty {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix} {wide_msg}")
                            .expect("valid template"),
                    );
                    bar.set_prefix(format!("{id} ({threads}t)"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.lock().expect("lock").insert(id.to_string(), bar);
                } else {
                    let mut lines = self.lines.lock().expect("lock");
                    lines.insert(id.to_string(), (Instant::now(), 0));
                }
            }
            Event::Progress {
                id,
                pos,
                len,
                message,
                elapsed,
            } => {
                if let Some(bar) = self.bars.lock().expect("lock").get(*id) {
                    if bar.length() != Some(*len) {
                        bar.set_length(*len);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "  {prefix} [{bar:25}] {pos}/{len} {msg} ({eta})",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                    }
                    bar.set_position(*pos);
                    bar.set_message(message.to_string());
                } else if !self.tty && *len >= MIN_LINE_STEPS {
                    let mut lines = self.lines.lock().expect("lock");
                    if let Some((started, printed)) = lines.get_mut(*id) {
                        let tenth = pos * 10 / len;
                        let elapsed = elapsed.unwrap_or_else(|| started.elapsed());
                        if tenth > *printed && elapsed >= self.quiet_start {
                            *printed = tenth;
                            let line = progress_line(id, *pos, *len, message, elapsed);
                            drop(lines);
                            self.line(&line);
                        }
                    }
                }
            }
            Event::StageWarning { id, message } => self.line(&format!("  warning {id}: {message}")),
            Event::StageFinished {
                id,
                duration,
                outcome,
            } => {
                if let Some(bar) = self.bars.lock().expect("lock").remove(*id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.lines.lock().expect("lock").remove(*id);
                if let Some(bar) = self.overall.lock().expect("lock").as_ref() {
                    bar.inc(1);
                }
                match outcome {
                    Outcome::Executed if !self.quiet => {
                        self.line(&format!("  ran {id} in {:.2}s", duration.as_secs_f64()))
                    }
                    Outcome::Executed => {}
                    Outcome::Reused if !self.quiet => {
                        self.line(&format!("  {id} was committed by another run meanwhile"))
                    }
                    Outcome::Reused => {}
                    Outcome::Failed { message, log } => self.line(&format!(
                        "  FAILED {id} after {:.2}s: {message}\n    log: {}",
                        duration.as_secs_f64(),
                        log.display()
                    )),
                    Outcome::Cancelled => self.line(&format!("  interrupted {id}")),
                }
            }
            Event::Skipped { id, because } => {
                self.line(&format!("  skipped {id}: input {because} failed"))
            }
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::RunFinished => {
                if let Some(bar) = self.overall.lock().expect("lock").take() {
                    bar.finish_and_clear();
                }
                let _ = self.multi.clear();
            }
        }
    }
}
