//! echoport-load end to end: the real binary as a child process against the real echoport (or a
//! deliberately broken echo server), on 127.0.0.1, reading its `--json` report.
//!
//! Every wait is bounded: a run that does not finish within `BOUND` is killed (the guard's Drop
//! also kills it when an assertion fails). The scenarios load the CPU, so the tests in this file
//! take turns (`serial()`): on a 2-core box an open-loop rate check next to a closed-loop run
//! would measure the neighbour, not the tool.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use common::run::{Run, TempPath, load, run_raw};
use common::{BOUND, Server};
use serde_json::Value;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The documented top-level fields every report has.
const FIELDS: [&str; 15] = [
    "scenario",
    "target",
    "conns",
    "size",
    "duration_secs",
    "warmup_secs",
    "rate_target",
    "messages",
    "per_sec",
    "mbps_out",
    "mbps_in",
    "latency_us",
    "errors",
    "mismatches",
    "timeline",
];

fn assert_common(r: &Run, scenario: &str) {
    let j = r.j();
    for k in FIELDS {
        assert!(j.get(k).is_some(), "field `{k}` missing\n{}", r.explain());
    }
    assert_eq!(j["scenario"], scenario);
    for k in ["p50", "p90", "p99", "p999", "max", "mean", "count"] {
        assert!(j["latency_us"].get(k).is_some(), "latency_us.{k} missing\n{}", r.explain());
    }
    let l = &j["latency_us"];
    let p = |k: &str| l[k].as_u64().unwrap_or(0);
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max"));
    assert_eq!(l["count"].as_u64(), Some(r.u("messages")), "histogram count == messages\n{}", r.explain());
    for point in j["timeline"].as_array().expect("timeline is an array") {
        for k in ["t", "messages", "p99_us"] {
            assert!(point.get(k).is_some(), "timeline point lacks `{k}`: {point}");
        }
    }
    assert_eq!(r.u("errors"), 0, "{}", r.explain());
    assert_eq!(r.u("mismatches"), 0, "{}", r.explain());
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert!(r.stdout.contains("latency (us)"), "human table on stdout\n{}", r.explain());
}

#[test]
fn closed_loop_echo_is_exact_and_consistent() {
    let _s = serial();
    let server = Server::start(&[]);
    let addr = server.addr().to_string();
    let plot = TempPath::new("svg");
    let r = load(&[
        "echo",
        "--target",
        &addr,
        "--conns",
        "8",
        "--size",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--plot",
        plot.arg(),
    ]);
    assert_common(&r, "echo");
    let messages = r.u("messages");
    assert!(messages > 0, "{}", r.explain());
    assert_eq!(r.j()["rate_target"], Value::Null);
    assert_eq!(r.u("conns"), 8);
    assert_eq!(r.u("size"), 100);
    assert_eq!(r.f("duration_secs"), 1.0);
    assert_eq!(r.f("warmup_secs"), 0.3);
    assert!(r.f("per_sec") > 0.0 && r.f("mbps_out") > 0.0 && r.f("mbps_in") > 0.0);
    assert_eq!(r.j()["timeline"].as_array().map(Vec::len), Some(1));

    // Every connection got back exactly what it sent, and the totals add up.
    let per_conn = r.j()["per_conn"].as_array().expect("per_conn");
    assert_eq!(per_conn.len(), 8);
    let (mut sent, mut received) = (0, 0);
    for c in per_conn {
        assert_eq!(c["sent"], c["received"], "connection {c}");
        assert!(c["sent"].as_u64() > Some(0), "every connection took part: {c}");
        sent += c["sent"].as_u64().unwrap();
        received += c["received"].as_u64().unwrap();
    }
    assert_eq!(received, messages);
    assert_eq!(sent, r.u("sent"));

    let svg = std::fs::read_to_string(&plot.0).expect("--plot wrote a file");
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "not an SVG: {:.80}", svg);
}

/// An echo server that flips one byte of each connection's stream after `after` bytes.
struct Corrupter {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Corrupter {
    fn start(after: u64) -> Corrupter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    // Bounded: a client that goes quiet ends this thread.
                    let _ = conn.set_read_timeout(Some(BOUND));
                    let mut buf = [0u8; 4096];
                    let mut seen = 0u64;
                    loop {
                        let n = match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if seen <= after && after < seen + n as u64 {
                            buf[(after - seen) as usize] ^= 0x5A;
                        }
                        seen += n as u64;
                        if conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Corrupter { addr, stop }
    }
}

impl Drop for Corrupter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

#[test]
fn corrupted_echo_is_a_mismatch_and_fails_the_run() {
    let _s = serial();
    let bad = Corrupter::start(1000);
    let r = load(&[
        "echo",
        "--target",
        &bad.addr.to_string(),
        "--conns",
        "2",
        "--size",
        "64",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(r.u("mismatches") >= 1, "{}", r.explain());
    assert!(r.stderr.lines().any(|l| l.starts_with("error: ") && l.contains("mismatch")), "{}", r.explain());

    // The stream scenario checks every byte too.
    let r = load(&["stream", "--target", &bad.addr.to_string(), "--conns", "1", "--duration", "0.5", "--warmup", "0"]);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(r.u("mismatches") >= 1, "{}", r.explain());
}

#[test]
fn open_loop_holds_the_requested_rate() {
    let _s = serial();
    let server = Server::start(&[]);
    let r = load(&[
        "echo",
        "--target",
        &server.addr().to_string(),
        "--conns",
        "10",
        "--size",
        "64",
        "--rate",
        "2000",
        "--duration",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert_common(&r, "echo");
    assert_eq!(r.f("rate_target"), 2000.0);
    let per_sec = r.f("per_sec");
    assert!((1800.0..=2200.0).contains(&per_sec), "per_sec {per_sec} not within 10% of 2000\n{}", r.explain());
    assert_eq!(r.j()["timeline"].as_array().map(Vec::len), Some(2));
}

#[test]
fn stream_reports_throughput_both_ways() {
    let _s = serial();
    let server = Server::start(&[]);
    let r = load(&[
        "stream",
        "--target",
        &server.addr().to_string(),
        "--conns",
        "2",
        "--size",
        "16k",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_common(&r, "stream");
    assert!(r.f("mbps_out") > 0.0 && r.f("mbps_in") > 0.0, "{}", r.explain());
    assert!(r.u("bytes_in") > 0 && r.u("messages") > 0, "{}", r.explain());
    for c in r.j()["per_conn"].as_array().expect("per_conn") {
        assert_eq!(c["bytes_out"], c["bytes_in"], "every byte came back: {c}");
    }
}

#[test]
fn connect_reports_connections_per_second() {
    let _s = serial();
    let server = Server::start(&[]);
    let r = load(&[
        "connect",
        "--target",
        &server.addr().to_string(),
        "--conns",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_common(&r, "connect");
    assert!(r.u("messages") > 0 && r.f("per_sec") > 0.0, "{}", r.explain());
}

#[test]
fn idle_holds_every_connection_and_measures_server_memory() {
    let _s = serial();
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let r = load(&[
        "idle",
        "--target",
        &server.addr().to_string(),
        "--conns",
        "300",
        "--hold",
        "0.3",
        "--server-pid",
        &pid,
        "--source-ips",
        "127.0.0.1,127.0.0.2",
    ]);
    assert_common(&r, "idle");
    assert_eq!(r.u("held"), 300, "{}", r.explain());
    assert_eq!(r.u("failed"), 0);
    assert!(r.j()["rss_per_conn_kib"].is_number(), "{}", r.explain());
    assert!(r.u("rss_before_kib") > 0 && r.u("rss_holding_kib") > 0);
}

#[test]
fn bad_arguments_exit_2() {
    let _s = serial();
    for args in [
        &["echo"][..],
        &["echo", "--target", "127.0.0.1:1", "--conns", "0"],
        &["echo", "--target", "127.0.0.1:1", "--duration", "-1"],
        &["echo", "--target", "127.0.0.1:1", "--size", "lots"],
        &["echo", "--target", "127.0.0.1:1", "--rate", "0"],
        &["echo", "--target", "not-an-address"],
        &["idle", "--target", "127.0.0.1:1", "--source-ips", "::1"],
        &["nosuchscenario"],
    ] {
        let r = run_raw(args, None);
        assert_eq!(r.code(), Some(2), "{args:?}\n{}", r.explain());
        assert!(r.stderr.starts_with("error:"), "{args:?}\n{}", r.explain());
    }
    let r = run_raw(&["echo", "--target", "127.0.0.1:1", "--plot", "x.png"], None);
    assert_eq!(r.code(), Some(2));
    assert!(r.stderr.lines().next().is_some_and(|l| l.contains("--plot") && l.contains("PNG")), "{}", r.explain());
}

#[test]
fn unreachable_target_is_one_clear_error() {
    let _s = serial();
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let target = format!("127.0.0.1:{port}");
    for scenario in ["echo", "stream", "connect", "idle"] {
        let r = load(&[scenario, "--target", &target, "--duration", "1"][..if scenario == "idle" { 3 } else { 5 }]);
        assert_eq!(r.code(), Some(1), "{scenario}\n{}", r.explain());
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr\n{}", r.explain());
        assert!(lines[0].starts_with(&format!("error: cannot connect to {target}: ")), "{}", r.explain());
        assert!(lines[0].contains("refused"), "{}", r.explain());
        assert!(r.json.is_none(), "no report for a run that never started");
    }
}
