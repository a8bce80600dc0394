//! Live progress: one spinner per resource in flight on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::plan::Action;

/// Something the engine reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A change started.
    Started {
        /// Resource address.
        address: String,
        /// What is being done.
        action: Action,
    },
    /// A change completed and was recorded.
    Finished {
        /// Resource address.
        address: String,
        /// What was done.
        action: Action,
        /// How long it took.
        elapsed: Duration,
    },
    /// A change failed.
    Failed {
        /// Resource address.
        address: String,
        /// Why.
        error: String,
    },
    /// A provider did something beyond the change itself (removed what a controller left).
    Note {
        /// Resource address.
        address: String,
        /// What.
        message: String,
    },
    /// Ctrl-C: no new work starts; running changes finish and are recorded.
    Interrupted {
        /// Changes still running.
        running: usize,
    },
    /// A second Ctrl-C: the run ends at once, abandoning the changes still running.
    Abandoned {
        /// Changes abandoned.
        running: usize,
    },
}

/// Receives engine events.
pub trait Progress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event);
}

fn verb(action: Action, done: bool) -> &'static str {
    match (action, done) {
        (Action::Create, false) => "creating",
        (Action::Create, true) => "created",
        (Action::Update, false) => "updating",
        (Action::Update, true) => "updated",
        (Action::Replace, false) => "replacing",
        (Action::Replace, true) => "replaced",
        (Action::Delete, false) => "deleting",
        (Action::Delete, true) => "deleted",
        (Action::NoOp, _) => "unchanged",
    }
}

/// Plain lines on stderr, one per start and end: for CI logs.
pub struct Lines;

impl Progress for Lines {
    fn event(&self, event: &Event) {
        match event {
            Event::Started { address, action } => {
                eprintln!("{address}: {}...", verb(*action, false))
            }
            Event::Finished {
                address,
                action,
                elapsed,
            } => eprintln!(
                "{address}: {} after {:.1}s",
                verb(*action, true),
                elapsed.as_secs_f64()
            ),
            Event::Failed { address, error } => eprintln!("{address}: FAILED: {error}"),
            Event::Note { address, message } => eprintln!("{address}: {message}"),
            Event::Interrupted { running } => eprintln!(
                "interrupted: waiting for {running} running change(s) to finish and be recorded; nothing new starts (interrupt again to stop at once)"
            ),
            Event::Abandoned { running } => eprintln!(
                "interrupted again: stopping at once, abandoning {running} running change(s)"
            ),
        }
    }
}

/// A spinner per resource in flight with its elapsed time, for terminals.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn event(&self, event: &Event) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            Event::Started { address, action } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{address}: {}", verb(*action, false)));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(address.clone(), bar);
            }
            Event::Finished {
                address,
                action,
                elapsed,
            } => {
                if let Some(bar) = bars.remove(address) {
                    bar.finish_and_clear();
                }
                let _ = self.multi.println(format!(
                    "{} {address}: {} after {:.1}s",
                    console::style("✓").green(),
                    verb(*action, true),
                    elapsed.as_secs_f64()
                ));
            }
            Event::Failed { address, error } => {
                if let Some(bar) = bars.remove(address) {
                    bar.finish_and_clear();
                }
                let _ = self
                    .multi
                    .println(format!("{} {address}: {error}", console::style("✗").red()));
            }
            Event::Note { address, message } => {
                let _ = self.multi.println(format!("  {address}: {message}"));
            }
            Event::Interrupted { running } => {
                let _ = self.multi.println(format!(
                    "interrupted: waiting for {running} running change(s) to finish and be recorded (interrupt again to stop at once)"
                ));
            }
            Event::Abandoned { running } => {
                let _ = self.multi.println(format!(
                    "interrupted again: stopping at once, abandoning {running} running change(s)"
                ));
            }
        }
    }
}

/// Only failures, for `-q`.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, event: &Event) {
        if let Event::Failed { .. } = event {
            Lines.event(event);
        }
    }
}
