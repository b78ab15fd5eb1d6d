//! A real `redis-server` (Debian's 7.0) run by a test: loopback only, its own port, no
//! persistence, in a directory of its own, stopped and reaped on drop even when the test panics.
//!
//! Included from a test file with `#[path = "common/redis.rs"] mod redis;`; only std and nix, so
//! it depends on nothing else in tests/common.
//!
//! Redis cannot listen on port 0, so the port is picked by binding 127.0.0.1:0 and dropping the
//! listener; another process may take it in between, so a server that fails to start is retried
//! on a new port. Readiness is `PING` answered by `+PONG` over TCP, polled with a bound.

#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where Debian's package puts the server; `PATH` is searched too.
const DEFAULT_BIN: &str = "/usr/bin/redis-server";

/// Upper bound for the server to answer PING after it was started (CI is a loaded 2-core box).
const READY: Duration = Duration::from_secs(20);

/// How long a SIGTERMed server may take to exit before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Fresh ports tried before giving up (each failure is a port someone took in between).
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server` child.
pub struct Redis {
    bin: PathBuf,
    port: u16,
    /// Its working directory (nothing is written there with persistence off, but Redis wants one)
    /// and the home of its log file.
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Redis {
    /// Starts a server on a free loopback port and waits until it answers PING.
    pub fn start() -> Redis {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let bin = find_bin();
        let dir = std::env::temp_dir().join(format!(
            "echoport-redis-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut redis = Redis { bin, port: 0, dir, child: None, paused: false };
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(why) => failures.push(format!("port {}: {why}", redis.port)),
            }
        }
        panic!("redis-server did not start on any of {PORT_ATTEMPTS} ports:\n{}", failures.join("\n"));
    }

    /// `redis://127.0.0.1:PORT/0`, the `--cluster` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the running server; panics if it is stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is not running").id()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it. Clients see
    /// their connections close and new connections refused.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if self.paused {
            // A stopped process does not act on SIGTERM until continued.
            let _ = kill(pid, Signal::SIGCONT);
            self.paused = false;
        }
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                // No readiness signal for a child's exit other than polling.
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port (after [`Redis::stop`]) and waits until it
    /// answers PING. The port stays ours only by convention; a bind failure is retried (bounded),
    /// since the old server's sockets may take a moment to go.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: redis-server is still running");
        let deadline = Instant::now() + READY;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => {
                    panic!("redis-server did not start again on port {} within {READY:?}: {why}", self.port)
                }
                // Nothing signals that a port became free: try again shortly.
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// True if the server answers `PING` with `+PONG` now (within a second).
    pub fn answers_ping(&self) -> bool {
        ping(self.port)
    }

    /// Whether `key` exists (EXISTS over a fresh connection; false if Redis does not answer).
    pub fn exists(&self, key: &str) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let command = format!("*2\r\n$6\r\nEXISTS\r\n${}\r\n{key}\r\n", key.len());
        if s.write_all(command.as_bytes()).is_err() {
            return false;
        }
        let mut got = [0u8; 4];
        s.read_exact(&mut got).is_ok() && &got == b":1\r\n"
    }

    /// SIGSTOP: the server keeps its sockets (connections stay open, new ones are accepted by
    /// the kernel) but answers nothing: a Redis too slow to be of use.
    pub fn pause(&mut self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGSTOP).expect("SIGSTOP redis-server");
        self.paused = true;
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT).expect("SIGCONT redis-server");
        self.paused = false;
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Runs the server on `self.port` and waits for its PONG; on failure it is reaped and the
    /// reason returned (with its log).
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open {}: {e}", self.log_path().display()))?;
        let err = log.try_clone().map_err(|e| format!("dup the log file: {e}"))?;
        let port = self.port.to_string();
        let mut child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice"])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let deadline = Instant::now() + READY;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("redis-server exited ({st}) before answering PING; log:\n{}", self.log()));
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no PONG within {READY:?}; log:\n{}", self.log()));
            }
            // Nothing signals that the server is listening: poll.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if panicking {
            eprintln!("---- redis-server log (port {}) ----\n{}---- end ----", self.port, self.log());
        }
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// True if a server on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut got = [0u8; 7];
    let mut n = 0;
    while n < got.len() {
        match s.read(&mut got[n..]) {
            Ok(0) => return false,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    &got == b"+PONG\r\n"
}

/// A loopback port nobody listened on a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// The `redis-server` binary; panics saying how to install it if there is none.
fn find_bin() -> PathBuf {
    if Path::new(DEFAULT_BIN).is_file() {
        return PathBuf::from(DEFAULT_BIN);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found (neither {DEFAULT_BIN} nor on PATH): the cluster tests need a real Redis; \
             apt-get install redis-server (scripts/test.sh installs it when run as root)"
        )
    })
}
