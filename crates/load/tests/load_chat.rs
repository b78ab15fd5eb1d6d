//! `echoport-load chat` against a real IRC server: ngIRCd, started here on a free loopback port
//! with tests/fixtures/ngircd.conf (flood limits off). ngIRCd must be installed
//! (`apt-get install ngircd`); without it these tests fail, they never pass silently.
//!
//! Every wait is bounded, and the server is killed and reaped on drop even when a test panics.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use echoport_load::chat::{self, ChatArgs};

/// Upper bound for the server to come up, and for a whole load run beyond its own length.
const BOUND: Duration = Duration::from_secs(30);

/// Find the ngircd binary (Debian installs it in /usr/sbin, often not on a user's PATH).
fn ngircd_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/local/sbin".into()]);
    for dir in dirs {
        let bin = dir.join("ngircd");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "ngircd is not installed, and the chat load tests need a real IRC server: \
         install it with `apt-get install ngircd`"
    );
}

/// A private ngIRCd; killed and reaped on drop.
struct Ngircd {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Ngircd {
    /// Start one with `password` ("" for none) and wait until it answers a registration.
    fn start(password: &str) -> Ngircd {
        let bin = ngircd_bin();
        let mut last_log = String::new();
        // The free port is found by binding and closing, so another process may take it before
        // ngIRCd binds: then ngIRCd exits, and we try again on a new port.
        for _ in 0..3 {
            let mut server = Ngircd::spawn(&bin, password);
            match server.wait_ready(password) {
                Ok(()) => return server,
                Err(e) => last_log = format!("{e}\n--- ngircd output ---\n{}", server.log()),
            }
        }
        panic!("ngircd did not come up: {last_log}");
    }

    fn spawn(bin: &Path, password: &str) -> Ngircd {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "echoport-load-chat-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        let port = free_port();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ngircd.conf");
        let conf = fs::read_to_string(&fixture)
            .expect("read tests/fixtures/ngircd.conf")
            .replace("@PORT@", &port.to_string())
            .replace("@PASSWORD@", password);
        let conf_path = dir.join("ngircd.conf");
        fs::write(&conf_path, conf).expect("write ngircd.conf");
        let log = File::create(dir.join("ngircd.log")).expect("create ngircd.log");
        let child = Command::new(bin)
            .arg("--nodaemon")
            .arg("--config")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Ngircd { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir }
    }

    /// Ready means accepting TCP connections and completing a registration (001), not just
    /// having bound the port.
    fn wait_ready(&mut self, password: &str) -> Result<(), String> {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("ngircd exited with {status}"));
            }
            match register_probe(self.addr, password) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("no registration within {BOUND:?}: {e}"));
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("ngircd.log")).unwrap_or_default()
    }
}

impl Drop for Ngircd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// One client's registration, bounded by socket timeouts: Ok once the server says 001.
fn register_probe(addr: SocketAddr, password: &str) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let pass = if password.is_empty() { String::new() } else { format!("PASS {password}\r\n") };
    write!(w, "{pass}NICK probe\r\nUSER probe 0 * :probe\r\n").map_err(|e| format!("write: {e}"))?;
    let mut lines = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => return Err("closed before 001".into()),
            Ok(_) if line.split(' ').nth(1) == Some("001") => break,
            Ok(_) if line.starts_with("PING") => {
                let _ = write!(w, "PONG {}", &line[5..]);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let _ = w.write_all(b"QUIT :ready\r\n");
    Ok(())
}

fn args(target: SocketAddr, clients: usize, senders: usize, rate: f64, duration: f64) -> ChatArgs {
    ChatArgs {
        target: vec![target],
        clients,
        senders,
        rate,
        duration,
        warmup: 0.5,
        channel: "#bench".into(),
        size: 64,
        password: None,
        caps: String::new(),
        threads: Some(2),
        connect_batch: 8,
        tls: Default::default(),
    }
}

/// The lossless-run checks shared by the direct tests.
fn assert_lossless(o: &chat::ChatOutcome) {
    assert!(o.sent > 0, "nothing was sent");
    assert_eq!(o.errors, 0, "errors on a healthy server at a modest rate");
    assert_eq!(o.deliveries, o.expected_deliveries, "every message reaches every other client");
    assert_eq!((o.lost, o.duplicates, o.reordered), (0, 0, 0), "each once, in order");
    assert_eq!(o.latency.len(), o.deliveries, "one latency per delivery");
    let per_second: u64 = o.timeline.iter().map(|&(_, n)| n).sum();
    assert_eq!(per_second, o.deliveries, "the timeline accounts for every delivery");
}

/// What the lead's CI runs: the real binary, 50 clients, 5 senders, 500 messages/s, 2 s.
#[test]
fn cli_fanout_over_ngircd_loses_nothing() {
    let server = Ngircd::start("");
    let json = server.dir.join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoport-load"))
        .args(["chat", "--target", &server.addr.to_string()])
        .args(["--clients", "50", "--senders", "5", "--rate", "500", "--duration", "2", "--quiet", "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoport-load");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait echoport-load") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echoport-load chat did not stop by itself within {BOUND:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "echoport-load chat failed ({status}): {stderr}\n--- ngircd ---\n{}", server.log());
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json).expect("read --json report")).expect("parse --json report");
    let field = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("report has no number `{k}`: {report}"));
    assert!(field("sent") > 0, "{report}");
    assert_eq!(field("deliveries"), field("expected_deliveries"), "{report}");
    assert_eq!(field("deliveries"), field("sent") * 49, "{report}");
    assert_eq!(field("errors"), 0, "{report}");
}

#[test]
fn rate_limited_run_is_lossless_and_reports_progress() {
    let server = Ngircd::start("");
    let seen = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let progress = |n: u64| {
        assert!(n >= seen.load(Ordering::Relaxed), "progress never goes backwards");
        seen.store(n, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
    };
    let o = chat::run(&args(server.addr, 20, 4, 400.0, 1.0), &progress).expect("chat run");
    assert_lossless(&o);
    assert_eq!(o.expected_deliveries, o.sent * 19);
    // 400/s for 1 s after warm-up. The schedule is exact; the slack is for a loaded machine
    // stalling a sender near either end of the window.
    assert!(o.sent.abs_diff(400) <= 40, "sent {} at 400/s for 1 s", o.sent);
    assert_eq!(seen.load(Ordering::Relaxed), o.deliveries, "the last progress report is the total");
    assert!(calls.load(Ordering::Relaxed) >= 10, "progress about every 100 ms");
}

/// Unlimited mode: flow control keeps it lossless and the drain waits for the last messages.
#[test]
fn unlimited_run_is_lossless() {
    let server = Ngircd::start("");
    let o = chat::run(&args(server.addr, 30, 3, 0.0, 1.0), &|_| {}).expect("chat run");
    assert_lossless(&o);
    assert!(o.sent > 100, "unlimited mode sent only {} messages in 1 s", o.sent);
}

#[test]
fn password_is_sent_and_a_refusal_is_explained() {
    let server = Ngircd::start("sesame");
    let mut a = args(server.addr, 5, 1, 100.0, 0.5);
    a.password = Some("sesame".into());
    assert_lossless(&chat::run(&a, &|_| {}).expect("run with the right password"));

    a.password = Some("wrong".into());
    let started = Instant::now();
    let e = chat::run(&a, &|_| {}).err().expect("a wrong password must fail the run");
    assert!(e.contains("the server said: ERROR"), "the error shows the server's line: {e}");
    assert!(started.elapsed() < BOUND, "setup failure is reported promptly");
}

#[test]
fn caps_are_requested_and_a_refusal_is_explained() {
    let server = Ngircd::start("");
    let mut a = args(server.addr, 5, 1, 100.0, 0.5);
    // ngIRCd offers multi-prefix and nothing that tags lines.
    a.caps = "multi-prefix".into();
    assert_lossless(&chat::run(&a, &|_| {}).expect("run with a capability the server has"));
    a.caps = "multi-prefix server-time".into();
    let e = chat::run(&a, &|_| {}).err().expect("a refused capability must fail the run");
    assert!(e.contains("capabilities refused") && e.contains("NAK"), "{e}");
}

#[test]
fn unreachable_server_fails_fast_with_a_reason() {
    let port = free_port(); // closed again: nothing listens there
    let a = args(SocketAddr::from(([127, 0, 0, 1], port)), 3, 1, 10.0, 0.5);
    let e = chat::run(&a, &|_| {}).err().expect("nothing listens, so the run fails");
    assert!(e.contains("refused"), "{e}");
}
