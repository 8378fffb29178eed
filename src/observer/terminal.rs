//! Progress bars (indicatif) and per-stage lines on stderr.
//!
//! On a terminal: an overall bar plus one bar per running stage, with finished
//! stages printed above them. Elsewhere (CI logs, pipes): no bars, only the lines.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::executor::{Event, Outcome};

/// Shows a run on stderr.
pub struct TerminalReporter {
    multi: MultiProgress,
    tty: bool,
    overall: Mutex<Option<ProgressBar>>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
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
                        ProgressStyle::with_template("{elapsed:>6} [{bar:30}] {pos}/{len} stages")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    *self.overall.lock().expect("lock") = Some(bar);
                }
            }
            Event::Cached { .. } => {}
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
                }
            }
            Event::Progress {
                id,
                pos,
                len,
                message,
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
                }
            }
            Event::StageFinished {
                id,
                duration,
                outcome,
            } => {
                if let Some(bar) = self.bars.lock().expect("lock").remove(*id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
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
