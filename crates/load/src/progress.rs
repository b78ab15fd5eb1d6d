//! The live progress line on stderr: phase, elapsed/total seconds and the current rate. Drawn
//! only when stderr is a terminal and `--quiet` is not given, so it never ends up in logs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    warmup: Duration,
    total: Duration,
    unit: &'static str,
    last: (Instant, u64),
    rate: f64,
    drawn: Instant,
}

/// How often the main thread refreshes the line while workers run.
pub const TICK: Duration = Duration::from_millis(200);

impl Progress {
    /// `total` includes `warmup`; `unit` names what the counter counts ("msg", "conn").
    pub fn new(quiet: bool, warmup: Duration, total: Duration, unit: &'static str) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = ProgressBar::new(total.as_millis().max(1) as u64).with_style(style);
            bar.set_prefix("connect");
            bar
        });
        let now = Instant::now();
        Progress { bar, start: now, warmup, total, unit, last: (now, 0), rate: 0.0, drawn: now }
    }

    /// Restart the clock: call when the timed part begins (after connections are open).
    pub fn begin(&mut self) {
        self.start = Instant::now();
        self.last = (self.start, 0);
    }

    /// Show a phase without a clock of its own: opening connections, `count` of `of` open.
    pub fn phase(&self, name: &str, count: u64, of: u64) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(name.to_owned());
            bar.set_message(format!("{count}/{of} connections"));
        }
    }

    /// Refresh with the running total of completed units. Cheap enough to call per message:
    /// it redraws at most every 50 ms.
    pub fn update(&mut self, count: u64) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if now.duration_since(self.drawn) < Duration::from_millis(50) {
            return;
        }
        self.drawn = now;
        let dt = now.duration_since(self.last.0).as_secs_f64();
        if dt >= 0.5 {
            self.rate = count.saturating_sub(self.last.1) as f64 / dt;
            self.last = (now, count);
        }
        let elapsed = now.duration_since(self.start);
        let prefix = match elapsed {
            e if e < self.warmup => "warm-up",
            e if e < self.total => "run",
            _ => "drain",
        };
        bar.set_prefix(prefix);
        bar.set_position(elapsed.min(self.total).as_millis() as u64);
        bar.set_message(format!(
            "{:.1}/{:.1} s  {} {}/s",
            elapsed.as_secs_f64().min(self.total.as_secs_f64()),
            self.total.as_secs_f64(),
            human(self.rate),
            self.unit
        ));
    }

    /// The idle scenario's hold phase: a clock and how many connections are still held.
    pub fn holding(&self, held: u64) {
        let Some(bar) = &self.bar else { return };
        let elapsed = self.start.elapsed().min(self.total);
        bar.set_prefix("hold");
        bar.set_position(elapsed.as_millis() as u64);
        bar.set_message(format!(
            "{:.1}/{:.1} s  {held} connections held",
            elapsed.as_secs_f64(),
            self.total.as_secs_f64()
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// 246913.4 -> "246.9k".
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
