//! Shared helpers for the integration tests: a guard around the real `echoport`
//! binary (or another program, such as `wine echoport.exe`) running as a child
//! process, stderr log capture, a deterministic PRNG and small socket helpers. The
//! server embedded in the test process is [`embedded`].
//!
//! Every wait in here has an upper bound, and the child is killed and reaped in
//! `Drop` even when a test assertion panics.

#![allow(dead_code)]

pub mod embedded;
pub mod scrape;
pub mod tls;

#[allow(unused_imports)]
pub use scrape::*;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Generous upper bound for any single wait (CI is a loaded 2-core box).
pub const BOUND: Duration = Duration::from_secs(30);

/// Per-call socket read/write timeout used by the client helpers.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a blocking write may make no progress at all before the writer
/// concludes the server has stopped reading ("writes stop making progress").
/// There is no readiness signal for "the peer stopped reading", so this is a
/// timeout, not synchronisation: a spuriously early stall only makes a test
/// weaker, never wrongly red.
pub const STALL: Duration = Duration::from_millis(1500);

/// `echoport --mode chat` on a free port, with flood control off as in [`embedded::chat_args`].
pub fn chat_server(extra: &[&str]) -> Server {
    Server::start(&embedded::chat_args(extra))
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_echoport")
}

// ---------------------------------------------------------------------------
// Server guard
// ---------------------------------------------------------------------------

/// Builder for [`Server`].
#[derive(Default)]
pub struct ServerBuilder {
    /// The command line the server's arguments are appended to; empty means [`bin`].
    program: Vec<OsString>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    nofile: Option<u64>,
    /// Run in the child between fork and exec (see [`ServerBuilder::pre_exec`]).
    pre_exec: Option<Arc<dyn Fn() -> io::Result<()> + Send + Sync>>,
}

impl ServerBuilder {
    /// Run `program pre...` followed by the server's arguments instead of [`bin`]: for
    /// tests/windows.rs, `wine DIR/echoport.exe`.
    pub fn program<I, S>(mut self, program: impl AsRef<OsStr>, pre: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.program = std::iter::once(program.as_ref().to_owned())
            .chain(pre.into_iter().map(|a| a.as_ref().to_owned()))
            .collect();
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs.push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// Runs `hook` in the child after fork, before exec (a seccomp filter, say).
    ///
    /// # Safety
    /// `hook` runs in a forked copy of a multi-threaded process: it must only make
    /// async-signal-safe calls (plain syscalls; no allocation, no locks).
    #[cfg(unix)]
    pub unsafe fn pre_exec(mut self, hook: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> Self {
        self.pre_exec = Some(Arc::new(hook));
        self
    }

    /// Apply `ulimit -n n` (soft and hard RLIMIT_NOFILE) in the child only.
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Spawn the server and wait (bounded) for its `listening on` line.
    pub fn spawn(self) -> Server {
        let has =
            |flag: &str| self.args.iter().any(|a| a == flag || a.to_string_lossy().starts_with(&format!("{flag}=")));
        let mut args: Vec<OsString> = Vec::new();
        if !has("--listen") {
            args.extend(["--listen", "127.0.0.1:0"].map(OsString::from));
        }
        if let Some(io) = embedded::test_io().filter(|_| !has("--io") && self.program.is_empty()) {
            args.extend(["--io".into(), io.into()]);
        }
        if !has("--log-format") {
            args.extend(["--log-format", "text"].map(OsString::from));
        }
        if !has("--log-level") {
            args.extend(["--log-level", "info"].map(OsString::from));
        }
        args.extend(self.args.iter().cloned());

        let program = if self.program.is_empty() { vec![OsString::from(bin())] } else { self.program.clone() };
        let mut cmd = match self.nofile {
            None => {
                let mut c = Command::new(&program[0]);
                c.args(&program[1..]);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                // `exec` keeps the PID, so signals and /proc/PID reach the server.
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).args(&program);
                c
            }
        };
        cmd.args(&args);
        // Keep the ambient environment from changing the server's configuration.
        for (k, _) in std::env::vars_os() {
            let ks = k.to_string_lossy();
            if ks.starts_with("ECHOPORT_") || ks == "RUST_LOG" {
                cmd.env_remove(&k);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        #[cfg(unix)]
        if let Some(hook) = self.pre_exec.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook's own contract (ServerBuilder::pre_exec) is async-signal safety.
            unsafe { cmd.pre_exec(move || hook()) };
        }

        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {program:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = {
            let lines = Arc::clone(&lines);
            thread::Builder::new()
                .name("server-stderr".into())
                .spawn(move || {
                    let mut r = BufReader::new(stderr);
                    let mut buf = Vec::new();
                    loop {
                        buf.clear();
                        match r.read_until(b'\n', &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                let line = strip_ansi(&String::from_utf8_lossy(&buf)).trim_end().to_owned();
                                lines.lock().unwrap().push(line.clone());
                                let _ = tx.send(line);
                            }
                        }
                    }
                })
                .expect("spawn stderr reader")
        };

        let mut server =
            Server { child, rx, lines, reader: Some(reader), addrs: Vec::new(), tls_addrs: Vec::new(), status: None };
        let line = server.wait_for_line(|l| l.contains("listening on "), BOUND).unwrap_or_else(|| {
            panic!("server printed no `listening on` line within {BOUND:?}; args={args:?}\nstderr:\n{}", server.log())
        });
        server.addrs = parse_listening(&line);
        server.tls_addrs = parse_tls_listening(&line);
        assert!(!server.addrs.is_empty(), "could not parse an address from {line:?}");
        server
    }
}

/// Parse `... listening on A, B mode=echo workers=N` into addresses.
pub fn parse_listening(line: &str) -> Vec<SocketAddr> {
    let Some((_, rest)) = line.split_once("listening on ") else {
        return Vec::new();
    };
    // Text logs go on with ` mode=...`; in JSON logs the message string ends with a quote.
    let rest = rest.split('"').next().unwrap_or(rest);
    let rest = rest.split(" mode=").next().unwrap_or(rest);
    rest.split(", ").filter_map(|s| s.trim().parse().ok()).collect()
}

/// The TLS listeners of a `listening on ... tls=A,B` line (text logs; the field comes after the
/// others) or of its `"tls":"A,B"` field (JSON logs); empty without one.
pub fn parse_tls_listening(line: &str) -> Vec<SocketAddr> {
    let tls = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(json) => json["fields"]["tls"].as_str().map(str::to_owned),
        Err(_) => line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_once(" tls="))
            .map(|(_, tls)| tls.split(char::is_whitespace).next().unwrap_or_default().to_owned()),
    };
    tls.unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A running `echoport` child process. Killed and reaped on drop.
pub struct Server {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    /// The `--tls-listen` addresses, as bound (the listening line's `tls=` field).
    tls_addrs: Vec<SocketAddr>,
    status: Option<ExitStatus>,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Spawn with extra args (on top of `--listen 127.0.0.1:0`).
    pub fn start(args: &[&str]) -> Server {
        Server::builder().args(args).spawn()
    }

    /// First listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// First TLS listening address; panics if the server has none.
    pub fn tls_addr(&self) -> SocketAddr {
        *self.tls_addrs.first().expect("the server has no --tls-listen address")
    }

    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All stderr lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// All stderr received so far as one string (for failure messages).
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// Wait until some stderr line (ever received, including earlier ones)
    /// satisfies `pred`; `None` if none does within `timeout` or the server's
    /// stderr closed first.
    pub fn wait_for_line(&mut self, mut pred: impl FnMut(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(l) = lines[scanned..].iter().find(|l| pred(l)) {
                    return Some(l.clone());
                }
                scanned = lines.len();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let lines = self.lines.lock().unwrap();
                    return lines[scanned..].iter().find(|l| pred(l)).cloned();
                }
            }
        }
    }

    /// Like `wait_for_line` but panics (with the server log) on timeout.
    pub fn expect_line(&mut self, what: &str, timeout: Duration) -> String {
        match self.wait_for_line(|l| l.contains(what), timeout) {
            Some(l) => l,
            None => panic!("server did not log a line containing {what:?} within {timeout:?}\nstderr:\n{}", self.log()),
        }
    }

    /// Wait for the `final stats` line and parse it.
    pub fn final_stats(&mut self) -> HashMap<String, u64> {
        let line = self.expect_line("final stats", BOUND);
        stats(&line)
    }

    /// VmRSS of the server in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    #[cfg(unix)]
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).expect("kill(2)");
    }

    /// `Some(status)` if the process has exited (does not block).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Wait (bounded) for the process to exit; panics with the log on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("server did not exit within {timeout:?}\nstderr:\n{}", self.log());
            }
            // No readiness signal exists for process exit other than polling.
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Log lines whose level is one of `levels` (text format: `TIMESTAMP LEVEL target: message`).
    pub fn lines_at_level(&self, levels: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|lvl| levels.contains(&lvl)))
            .collect()
    }

    /// Panic (with the log) if the server logged anything at WARN or ERROR level.
    #[track_caller]
    pub fn assert_no_warnings(&self, what: &str) {
        let bad = self.lines_at_level(&["WARN", "ERROR"]);
        assert!(bad.is_empty(), "{what}: the server logged warnings or errors:\n{}", bad.join("\n"));
    }

    /// How many file descriptors the server has open (entries of /proc/PID/fd).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("read /proc/PID/fd").count()
    }

    /// Panic unless the server is still running.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.try_exit() {
            panic!("server exited unexpectedly: {st:?}\nstderr:\n{}", self.log());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(h) = self.reader.take() {
            // The pipe closes when the child dies, unless a process it started inherited it (a
            // wineserver that Wine auto-started, see scripts/test-windows.sh): wait for the
            // reader to end (its sender drops), but only so long.
            let deadline = Instant::now() + BOUND;
            loop {
                match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(_) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = h.join();
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        eprintln!("stderr of pid {} still open {BOUND:?} after it died: not waiting", self.child.id());
                        break;
                    }
                }
            }
        }
        if thread::panicking() {
            eprintln!("---- echoport stderr (pid {}) ----\n{}\n---- end ----", self.child.id(), self.log());
        }
    }
}

/// Parse `key=value` tokens with integer values from a `stats`/`final stats` line.
pub fn stats(line: &str) -> HashMap<String, u64> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|tok| {
            let (k, v) = tok.split_once('=')?;
            let v = v.trim_matches('"').parse().ok()?;
            Some((k.trim_matches('"').to_owned(), v))
        })
        .collect()
}

/// Fetch a key from parsed stats, panicking with the line if absent.
pub fn stat(s: &HashMap<String, u64>, key: &str) -> u64 {
    *s.get(key).unwrap_or_else(|| panic!("stats line has no `{key}=`: {s:?}"))
}

// ---------------------------------------------------------------------------
// Deterministic PRNG
// ---------------------------------------------------------------------------

/// xorshift64* — tiny, deterministic, good enough for sizes and test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 the seed so small/adjacent seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Random-access pseudo-random byte stream: byte `offset` of stream `seed`.
/// Lets a writer produce unbounded data and a reader verify it without storing it.
pub fn pattern_fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let pos = offset + i as u64;
        let block = Rng::new(seed ^ (pos / 8).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64();
        let bytes = block.to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[start..start + n]);
        i += n;
    }
}

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

/// Connect with bounded read/write timeouts and TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, BOUND).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Make a socket timeout error say what it is (std reports EAGAIN as WouldBlock).
pub fn explain_timeout(e: io::Error, what: &str) -> io::Error {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        io::Error::new(ErrorKind::TimedOut, format!("{what}: nothing happened within the socket timeout ({e})"))
    } else {
        e
    }
}

/// Read until EOF (bounded by the stream's read timeout per call).
pub fn read_to_eof(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err(explain_timeout(e, &format!("waiting for more data or EOF after {} bytes", out.len()))),
    }
}

/// Open a connection, send `data` from a writer thread while reading on this
/// one, half-close, and return everything received up to EOF.
pub fn try_echo_roundtrip(addr: SocketAddr, data: &[u8]) -> io::Result<Vec<u8>> {
    let s = TcpStream::connect_timeout(&addr, BOUND)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut r = s.try_clone()?;
    thread::scope(|sc| {
        let w = sc.spawn(move || -> io::Result<()> {
            let mut s = s;
            s.write_all(data)?;
            s.shutdown(Shutdown::Write)
        });
        let got = read_to_eof(&mut r);
        let wrote = w.join().expect("writer thread panicked");
        let got = got?;
        wrote?;
        Ok(got)
    })
}

/// Echo `data` over a fresh connection and assert it comes back byte-exact
/// followed by EOF.
pub fn echo_roundtrip(addr: SocketAddr, data: &[u8]) {
    let got = try_echo_roundtrip(addr, data).unwrap_or_else(|e| panic!("echo round trip of {} bytes: {e}", data.len()));
    assert_bytes_eq(&got, data, "echo round trip");
}

/// Echo `data` on an existing connection (which stays open): write it from a
/// scoped thread, read exactly `data.len()` bytes back, compare.
pub fn try_echo_on(s: &TcpStream, data: &[u8]) -> io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = s.try_clone()?;
    thread::scope(|sc| {
        let h = sc.spawn(move || w.write_all(data));
        let mut got = vec![0u8; data.len()];
        let res = r.read_exact(&mut got).map_err(|e| explain_timeout(e, "reading the echo"));
        let wres = h.join().expect("writer thread panicked");
        res?;
        wres?;
        if got != data {
            return Err(io::Error::other(format!(
                "echo mismatch at byte {:?} of {}",
                first_diff(&got, data),
                data.len()
            )));
        }
        Ok(())
    })
}

pub fn echo_on(s: &TcpStream, data: &[u8]) {
    try_echo_on(s, data).unwrap_or_else(|e| panic!("echo of {} bytes on open connection: {e}", data.len()));
}

pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or(if a.len() != b.len() { Some(a.len().min(b.len())) } else { None })
}

/// Compare without dumping megabytes into the panic message.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: got {} bytes, want {} bytes, first difference at {:?}",
            got.len(),
            want.len(),
            first_diff(got, want)
        );
    }
}

/// True if a read result means "the server closed this connection".
pub fn is_closed(r: &io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe),
        Ok(_) => false,
    }
}

/// Write the pattern stream `seed` to `s` without ever reading, until writes
/// stop making progress for [`STALL`] or `cap` total bytes have been written.
/// `written` is the running total (so the call can be repeated). Returns the
/// number of bytes written by this call.
pub fn write_until_stalled(s: &TcpStream, seed: u64, written: &mut u64, cap: u64) -> u64 {
    let mut s = s;
    let old = s.write_timeout().unwrap();
    s.set_write_timeout(Some(STALL)).unwrap();
    let start = *written;
    let mut buf = vec![0u8; 256 * 1024];
    while *written < cap {
        let n = ((cap - *written) as usize).min(buf.len());
        pattern_fill(seed, *written, &mut buf[..n]);
        match s.write(&buf[..n]) {
            Ok(0) => panic!("write returned 0"),
            Ok(k) => *written += k as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write failed after {} bytes: {e}", *written),
        }
    }
    s.set_write_timeout(old).unwrap();
    *written - start
}

/// Read from `s` until EOF and verify the bytes are exactly the pattern stream
/// `seed` for `0..expected`. Returns an error description on mismatch.
pub fn read_pattern_to_eof(s: &mut TcpStream, seed: u64, expected: u64) -> Result<(), String> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut want = vec![0u8; buf.len()];
    let mut pos: u64 = 0;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = explain_timeout(e, "read");
                return Err(format!("read failed after {pos} of {expected} bytes: {e}"));
            }
        };
        if pos + n as u64 > expected {
            return Err(format!("received more than the {expected} bytes sent (at least {})", pos + n as u64));
        }
        pattern_fill(seed, pos, &mut want[..n]);
        if let Some(d) = first_diff(&buf[..n], &want[..n]) {
            return Err(format!("byte mismatch at offset {}", pos + d as u64));
        }
        pos += n as u64;
    }
    if pos != expected {
        return Err(format!("EOF after {pos} bytes, expected {expected}"));
    }
    Ok(())
}

/// Raise this process's soft RLIMIT_NOFILE to at least `min` (up to the hard
/// limit). Panics if the hard limit is too low for the test.
#[cfg(unix)]
pub fn raise_nofile(min: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= min {
        return;
    }
    assert!(hard >= min, "this test needs RLIMIT_NOFILE >= {min}, but the hard limit is {hard}");
    setrlimit(Resource::RLIMIT_NOFILE, min.max(soft), hard).expect("setrlimit");
}

/// What a program run by [`run_bounded`] did.
#[derive(Debug)]
pub struct Ran {
    /// `None` if it was killed for outliving its bound.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed) to completion, killing it after `bound`. Output goes to files, not
/// pipes, so a process the command leaves behind holding them cannot stall the read.
pub fn run_bounded(mut cmd: Command, bound: Duration) -> Ran {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("run-{}-{n}", std::process::id()));
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let file = |p: &std::path::Path| std::fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    cmd.stdin(Stdio::null()).stdout(file(&out_path)).stderr(file(&err_path));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // No readiness signal for a child's exit other than polling (as in Server::wait_exit).
        thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &std::path::Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    Ran { status, stdout: read(&out_path), stderr: read(&err_path) }
}

/// Re-checks `cond` until it holds or `timeout` passes; true if it held. Only for state that gives
/// no readiness signal (process tables under /proc), where polling is the only way to observe it.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A connected client socket with its buffer sizes fixed before the handshake (which also turns
/// off the kernel's buffer autotuning for it), so how much it can absorb or push is bounded.
pub fn connect_with_buffers(addr: SocketAddr, recv: Option<usize>, send: Option<usize>) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).expect("socket");
    if let Some(n) = recv {
        sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    if let Some(n) = send {
        sock.set_send_buffer_size(n).expect("SO_SNDBUF");
    }
    sock.connect_timeout(&addr.into(), BOUND).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let s = TcpStream::from(sock);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Turns the next close() of `s` into a TCP reset (SO_LINGER 0), discarding whatever is queued.
pub fn reset_on_close(s: &TcpStream) {
    socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
}
