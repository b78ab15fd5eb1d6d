//! SIGINT/SIGTERM: the first asks for a graceful drain, a second one exits at once.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;

/// Exit status after a second signal cut the drain short (128 + SIGINT, what shells report).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Termination signals, caught from now on instead of killing the process.
pub struct ShutdownSignals(Signals);

impl ShutdownSignals {
    pub fn install() -> io::Result<Self> {
        Signals::new([SIGINT, SIGTERM]).map(ShutdownSignals)
    }

    /// Blocks until the next SIGINT or SIGTERM and returns its name.
    pub fn wait(&mut self) -> &'static str {
        match self.0.forever().next() {
            Some(SIGINT) => "SIGINT",
            Some(SIGTERM) => "SIGTERM",
            _ => "signal",
        }
    }

    /// Watches for a second signal on a background thread and exits the process when it comes.
    pub fn exit_on_next(mut self) {
        let spawned = std::thread::Builder::new().name("echoport-signals".into()).spawn(move || {
            let signal = self.wait();
            tracing::warn!(signal, "second signal: exiting without waiting for connections");
            std::process::exit(FORCED_EXIT_CODE);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch for a second signal");
        }
    }
}
