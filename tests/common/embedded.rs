//! echoport embedded in the test process: bound on a free loopback port, run on a thread of its
//! own, stopped with its `Shutdown` token, and judged by the `FinalStats` that `run` returns. For
//! tests that need no signal, rlimit or reading of the server process (RSS, descriptors, exit
//! status, log lines); those use the child-process `Server` of tests/common.
//!
//! Only std and the `echoport` library, so that crates/load/tests includes this file too. The
//! including module provides `BOUND`. No tracing subscriber is installed: the tests of a file run
//! on threads of one process, and nothing here may be global to it.

#![allow(dead_code)]

use super::BOUND;
use echoport::server::{FinalStats, Server as Echoport, StartError};
use echoport::shutdown::{Phase, Shutdown};
use std::net::SocketAddr;
use std::sync::mpsc::{self, TryRecvError};

/// `--flood-rate 0` unless `extra` sets it: tests send in volume and sync often, and flood
/// control has its own tests.
pub fn chat_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--mode", "chat"];
    if !extra.contains(&"--flood-rate") {
        args.extend(["--flood-rate", "0"]);
    }
    args.extend_from_slice(extra);
    args
}

/// An embedded chat server, flood control off as in [`chat_args`].
pub fn chat_server(extra: &[&str]) -> Server {
    Server::start(&chat_args(extra))
}

/// A running embedded server. Dropped without [`stop`](Self::stop), it is stopped and must have
/// seen no connection errors (a panic in a handler is one: the worker survives it, the count
/// remembers it).
pub struct Server {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    metrics: Option<SocketAddr>,
    shutdown: Shutdown,
    /// What `run` returned, sent by its thread as it ends; `None` once received.
    done: Option<mpsc::Receiver<Result<FinalStats, StartError>>>,
}

/// The environment variable naming the I/O backend every server of the suite runs on
/// (scripts/test.sh runs the suite once per backend); unset: the server's own default.
pub const TEST_IO: &str = "ECHOPORT_TEST_IO";

/// `--io` for the servers the tests start (see [`TEST_IO`]), unless a test chooses its own.
pub fn test_io() -> Option<String> {
    std::env::var(TEST_IO).ok().filter(|v| !v.is_empty())
}

impl Server {
    /// echoport with `args` (flags as on the command line), listening on 127.0.0.1 on a port the
    /// OS picks unless `args` has `--listen`, with no periodic stats line (nothing reads it).
    pub fn start(args: &[&str]) -> Server {
        // The child-process server has its environment cleaned; this one parses the test's own.
        let ambient: Vec<_> =
            std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("ECHOPORT_") && k != TEST_IO).collect();
        assert!(ambient.is_empty(), "unset these to run in-process servers with the flags tests give: {ambient:?}");
        let has = |flag: &str| args.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let io = test_io();
        let mut argv = vec!["echoport"];
        if !has("--listen") {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        if let Some(io) = io.as_deref().filter(|_| !has("--io")) {
            argv.extend(["--io", io]);
        }
        if !has("--stats-interval") {
            argv.extend(["--stats-interval", "0"]);
        }
        argv.extend_from_slice(args);
        let config = echoport::config::load_from(&argv).unwrap_or_else(|e| panic!("server flags {args:?}: {e}"));
        let server = Echoport::bind(&config).unwrap_or_else(|e| panic!("server flags {args:?}: {e}"));
        let (addrs, metrics) = (server.local_addrs().to_vec(), server.metrics_addr());
        let tls_addrs = server.local_tls_addrs().to_vec();
        let shutdown = Shutdown::new();
        let (tx, done) = mpsc::channel();
        let token = shutdown.clone();
        std::thread::Builder::new()
            .name("embedded-echoport".into())
            .spawn(move || {
                let _ = tx.send(server.run(token));
            })
            .expect("spawn the server thread");
        Server { addrs, tls_addrs, metrics, shutdown, done: Some(done) }
    }

    /// First listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// First `--tls-listen` address; panics if the server has none.
    pub fn tls_addr(&self) -> SocketAddr {
        *self.tls_addrs.first().expect("the server was started without --tls-listen")
    }

    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The `--metrics-listen` address, as bound.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("the server was started without --metrics-listen")
    }

    /// The process whose memory the server's connections use: this one.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Panic unless the server is still serving (`run` has not returned).
    #[track_caller]
    pub fn assert_alive(&self) {
        match self.done.as_ref().map(|done| done.try_recv()) {
            Some(Err(TryRecvError::Empty)) => {}
            Some(Ok(result)) => panic!("the server stopped on its own: {result:?}"),
            Some(Err(TryRecvError::Disconnected)) => panic!("the server thread panicked"),
            None => panic!("the server was already stopped"),
        }
    }

    /// Requests the shutdown and waits (bounded) for `run` to return; panics unless it returned
    /// its stats (what the binary turns into exit status 0) with the token stopped.
    #[track_caller]
    pub fn stop(mut self) -> FinalStats {
        self.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn finish(&mut self) -> Result<FinalStats, String> {
        let done = self.done.take().ok_or("the server was already stopped")?;
        self.shutdown.request();
        let result = done.recv_timeout(BOUND).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => format!("the server did not stop within {BOUND:?}"),
            mpsc::RecvTimeoutError::Disconnected => "the server thread panicked".to_owned(),
        })?;
        let stats = result.map_err(|e| format!("the server failed: {e}"))?;
        if self.shutdown.phase() != Phase::Stopped {
            return Err(format!("run returned with the token at {:?}", self.shutdown.phase()));
        }
        Ok(stats)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.done.is_some() {
            let stopped = self.finish();
            // A second panic while a failing test unwinds would abort and hide the first one.
            if !std::thread::panicking() {
                let stats = stopped.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(stats.totals.errors, 0, "the server saw connection errors: {stats:?}");
            }
        }
    }
}
