//! echoport-load --tls end to end: the real binary against a small rustls echo server of the
//! test's own (tests/common/tls_echo.rs), on 127.0.0.1, reading its `--json` report. Every byte
//! is still verified through the session, and every run is bounded by `BOUND`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use common::Server;
use common::run::{Run, load};
use common::tls_echo::TlsEcho;

/// The scenarios load the CPU: the tests of this file take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A clean run with the handshake histogram: `handshakes` of them, percentiles in order.
fn assert_tls_ok(r: &Run, handshakes: u64) {
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert_eq!(r.u("errors"), 0, "{}", r.explain());
    assert_eq!(r.u("mismatches"), 0, "{}", r.explain());
    let h = &r.j()["handshake"];
    let n = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("handshake.{k} missing\n{}", r.explain()));
    assert_eq!(n("count"), handshakes, "{}", r.explain());
    assert!(n("p50") <= n("p99") && n("p99") <= n("max"), "{}", r.explain());
    assert!(n("max") > 0, "a handshake takes time\n{}", r.explain());
    assert!(r.stdout.contains("handshake (us)"), "the table shows it\n{}", r.explain());
}

#[test]
fn echo_through_tls_is_byte_exact() {
    let _s = serial();
    let server = TlsEcho::start();
    let addr = server.addr.to_string();
    let r = load(&[
        "echo",
        "--target",
        &addr,
        "--tls",
        "--tls-insecure",
        "--conns",
        "4",
        "--size",
        "3000",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ]);
    assert_tls_ok(&r, 4);
    assert!(r.u("messages") > 0, "{}", r.explain());
    for c in r.j()["per_conn"].as_array().expect("per_conn") {
        assert_eq!(c["sent"], c["received"], "connection {c}");
        assert!(c["sent"].as_u64() > Some(0), "every connection took part: {c}");
    }
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 4, "one full handshake per connection");

    // The open loop goes through the same path.
    let r = load(&[
        "echo",
        "--target",
        &addr,
        "--tls",
        "--tls-insecure",
        "--conns",
        "2",
        "--rate",
        "400",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    assert_tls_ok(&r, 2);
    assert!(r.u("messages") > 100, "{}", r.explain());
}

#[test]
fn certificate_is_verified_against_tls_ca() {
    let _s = serial();
    let server = TlsEcho::start();
    let addr = server.addr.to_string();
    let ca = server.cert.cert_pem.arg();
    let base = ["echo", "--target", &addr, "--conns", "1", "--duration", "0.2", "--warmup", "0", "--tls"];

    // The default name is the target's IP, which the certificate carries as an IP SAN.
    let r = load(&[&base[..], &["--tls-ca", ca]].concat());
    assert_tls_ok(&r, 1);
    let r = load(&[&base[..], &["--tls-ca", ca, "--tls-server-name", "localhost"]].concat());
    assert_tls_ok(&r, 1);

    // A name the certificate does not have: the handshake fails, the run says why and fails.
    let r = load(&[&base[..], &["--tls-ca", ca, "--tls-server-name", "other.example"]].concat());
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(r.stderr.contains("certificate"), "the reason is named\n{}", r.explain());

    // No way to verify: refused before connecting, naming the flags.
    let r = load(&base);
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    assert!(r.stderr.contains("--tls-ca") && r.stderr.contains("--tls-insecure"), "{}", r.explain());
    let r = load(&[&base[..], &["--tls-ca", "/nonexistent/ca.pem"]].concat());
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    assert!(r.stderr.contains("/nonexistent/ca.pem"), "{}", r.explain());
    // The TLS options mean nothing without --tls.
    let r = load(&["echo", "--target", &addr, "--tls-insecure"]);
    assert_eq!(r.code(), Some(2), "{}", r.explain());
}

#[test]
fn stream_connect_and_idle_over_tls() {
    let _s = serial();
    let server = TlsEcho::start();
    let addr = server.addr.to_string();
    let tls = ["--tls", "--tls-insecure"];

    let r = load(
        &[&["stream", "--target", &addr, "--conns", "2", "--duration", "0.5", "--warmup", "0.1"], &tls[..]].concat(),
    );
    assert_tls_ok(&r, 2);
    assert!(r.u("bytes_in") > 1 << 20, "bulk data went through TLS\n{}", r.explain());

    // Every attempt is a new session: one handshake per connection measured.
    let r = load(
        &[&["connect", "--target", &addr, "--conns", "2", "--duration", "0.5", "--warmup", "0"], &tls[..]].concat(),
    );
    let messages = r.u("messages");
    assert!(messages > 5, "{}", r.explain());
    assert_tls_ok(&r, messages);

    let r = load(
        &[
            &["connect", "--target", &addr, "--conns", "2", "--duration", "0.5", "--warmup", "0", "--handshake-only"],
            &tls[..],
        ]
        .concat(),
    );
    let messages = r.u("messages");
    assert!(messages > 5, "{}", r.explain());
    assert_tls_ok(&r, messages);
    assert_eq!(r.u("size"), 0, "no round trip\n{}", r.explain());

    let r = load(&[&["idle", "--target", &addr, "--conns", "20", "--hold", "0.3"], &tls[..]].concat());
    assert_tls_ok(&r, 20);
    assert_eq!(r.u("held"), 20, "{}", r.explain());
}

#[test]
fn tls_to_a_plain_server_fails_clearly() {
    let _s = serial();
    // echoport in plain echo mode sends the ClientHello back, which is no ServerHello.
    let server = Server::start(&[]);
    let addr = server.addr().to_string();
    let r = load(&["echo", "--target", &addr, "--tls", "--tls-insecure", "--conns", "1", "--duration", "0.2"]);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(r.stderr.contains("TLS"), "the reason is named\n{}", r.explain());
}
