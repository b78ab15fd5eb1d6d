//! The `echoport` binary: parse the configuration, set up logging and the OS's termination
//! signals, and run the server library until it has drained.

use echoport::config::{self, Config, Invocation, LogFormat};
use echoport::server::Server;
use echoport::shutdown::Shutdown;
use echoport::tls::Tls;
use std::process::ExitCode;

/// Exit status after a second signal cut the drain short (128 + SIGINT, what shells report).
const FORCED_EXIT_CODE: i32 = 130;

fn main() -> ExitCode {
    match config::invocation() {
        Ok(Invocation::Serve(config)) => {
            init_logging(&config);
            match serve(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 2),
            }
        }
        Ok(Invocation::Check(args)) => match echoport::check::run(&args) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, 1),
        },
        Ok(Invocation::HashPassword) => match hash_password() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, 1),
        },
        Err(e) => fail(&e, 2),
    }
}

fn serve(config: &Config) -> Result<(), String> {
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    let shutdown = Shutdown::new();
    signals::install(&shutdown, server.tls().cloned()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
    server.run(shutdown).map(drop).map_err(|e| e.to_string())
}

/// `echoport hash-password`: the first line of stdin (without its line break) as an argon2id
/// PHC string. Read from stdin, not an argument, so the password never shows in `ps` or shell
/// history; not echo-suppressed (pipe it in, or type it where nobody watches).
fn hash_password() -> Result<String, String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("no password on stdin (one line expected)".to_owned());
    }
    echoport::chat::passwords::hash(password.as_bytes())
}

/// The first termination signal asks for the graceful drain; a second one exits at once.
fn on_signal(shutdown: &Shutdown, name: &str) {
    if shutdown.request() {
        tracing::info!(signal = name, "signal received");
    } else {
        tracing::warn!(signal = name, "second signal: exiting without waiting for connections");
        std::process::exit(FORCED_EXIT_CODE);
    }
}

/// SIGHUP: the TLS certificate and key are read again; a bad pair leaves the old one serving.
#[cfg_attr(windows, allow(dead_code))]
fn reload(tls: Option<&Tls>) {
    match tls {
        Some(tls) => match tls.reload() {
            Ok(()) => tracing::info!("tls: reloaded certificate"),
            Err(e) => tracing::error!("tls: cannot reload: {e}; keeping the old one"),
        },
        None => tracing::info!("SIGHUP: nothing to reload (no TLS listener)"),
    }
}

#[cfg(unix)]
mod signals {
    use echoport::shutdown::Shutdown;
    use echoport::tls::Tls;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use std::io;

    /// SIGINT and SIGTERM (drain), SIGHUP (reload), delivered to a thread of their own.
    pub fn install(shutdown: &Shutdown, tls: Option<Tls>) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let shutdown = shutdown.clone();
        std::thread::Builder::new().name("echoport-signals".into()).spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => super::reload(tls.as_ref()),
                    SIGINT => super::on_signal(&shutdown, "SIGINT"),
                    _ => super::on_signal(&shutdown, "SIGTERM"),
                }
            }
        })?;
        Ok(())
    }
}

#[cfg(windows)]
mod signals {
    use echoport::shutdown::Shutdown;
    use std::io;

    /// Ctrl-C, Ctrl-Break and closing the console window, through the `ctrlc` crate (which
    /// runs the handler on a thread of its own). On a close, Windows ends the process as soon as
    /// the crate's console handler has returned, so that drain is cut short (README, Windows).
    /// Windows has no SIGHUP: a new certificate takes a restart there.
    pub fn install(shutdown: &Shutdown, _tls: Option<echoport::tls::Tls>) -> io::Result<()> {
        let shutdown = shutdown.clone();
        ctrlc::set_handler(move || super::on_signal(&shutdown, "Ctrl-C")).map_err(io::Error::other)
    }
}

/// Logging to stderr: `--log-level` if given, else RUST_LOG, else "info".
fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match &config.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|e| {
        eprintln!("warning: bad log filter ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn fail(e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
