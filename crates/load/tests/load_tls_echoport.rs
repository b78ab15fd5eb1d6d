//! echoport-load --tls against echoport's own `--tls-listen` (embedded, with a certificate rcgen
//! makes at test time): echo and stream byte-exact through TLS, chat fan-out between TLS
//! clients, and `connect --handshake-only` against the IRC server. The embedded server must have
//! seen no connection errors when it stops, so every run here must also be clean on its side.

mod common;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use common::Server;
use common::run::{Run, load};
use common::tls_echo::TestCert;

/// The scenarios load the CPU: the tests of this file take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// echoport with one plain and one TLS listener; the TLS address.
fn tls_server(cert: &TestCert, extra: &[&str]) -> (Server, SocketAddr) {
    let mut args =
        vec!["--tls-listen", "127.0.0.1:0", "--tls-cert", cert.cert_pem.arg(), "--tls-key", cert.key_pem.arg()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let addr = server.tls_addr();
    (server, addr)
}

fn assert_clean(r: &Run, handshakes: u64) {
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert_eq!(r.u("errors"), 0, "{}", r.explain());
    assert_eq!(r.u("mismatches"), 0, "{}", r.explain());
    assert_eq!(r.j()["handshake"]["count"].as_u64(), Some(handshakes), "{}", r.explain());
}

#[test]
fn echo_and_stream_through_echoport_tls_are_byte_exact() {
    let _s = serial();
    let cert = TestCert::new();
    let (server, addr) = tls_server(&cert, &[]);
    let addr = addr.to_string();
    // Verified for real: the certificate carries 127.0.0.1, the default name.
    let tls = ["--tls", "--tls-ca", cert.cert_pem.arg()];
    for size in ["1", "1000", "100k"] {
        let r = load(
            &[
                &["echo", "--target", &addr, "--conns", "4", "--size", size, "--duration", "0.5", "--warmup", "0.1"],
                &tls[..],
            ]
            .concat(),
        );
        assert_clean(&r, 4);
        assert!(r.u("messages") > 0, "size {size}\n{}", r.explain());
        for c in r.j()["per_conn"].as_array().expect("per_conn") {
            assert_eq!(c["sent"], c["received"], "size {size}, connection {c}");
        }
    }
    let r = load(
        &[&["stream", "--target", &addr, "--conns", "2", "--duration", "0.5", "--warmup", "0.1"], &tls[..]].concat(),
    );
    assert_clean(&r, 2);
    assert!(r.u("bytes_in") > 1 << 20, "{}", r.explain());
    drop(server);
}

#[test]
fn chat_fan_out_between_tls_clients() {
    let _s = serial();
    let cert = TestCert::new();
    let (server, addr) = tls_server(&cert, &["--mode", "chat", "--flood-rate", "0"]);
    let addr = addr.to_string();
    let r = load(&[
        "chat",
        "--target",
        &addr,
        "--tls",
        "--tls-insecure",
        "--clients",
        "12",
        "--senders",
        "3",
        "--rate",
        "300",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--threads",
        "2",
    ]);
    assert_clean(&r, 12);
    assert!(r.u("deliveries") > 0, "{}", r.explain());
    assert_eq!(r.u("lost"), 0, "{}", r.explain());
    assert_eq!(
        r.u("deliveries"),
        r.u("expected_deliveries"),
        "every message reached every other client\n{}",
        r.explain()
    );

    // An IRC server does not echo: connect, handshake, close.
    let r = load(&[
        "connect",
        "--target",
        &addr,
        "--tls",
        "--tls-insecure",
        "--handshake-only",
        "--conns",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    let messages = r.u("messages");
    assert!(messages > 5, "{}", r.explain());
    assert_clean(&r, messages);

    // Idle TLS connections held on the IRC server, each proven by its handshake alone.
    let r = load(&[
        "idle",
        "--target",
        &addr,
        "--tls",
        "--tls-insecure",
        "--handshake-only",
        "--conns",
        "20",
        "--hold",
        "0.3",
    ]);
    assert_eq!(r.u("held"), 20, "{}", r.explain());
    assert_eq!(r.u("dropped"), 0, "{}", r.explain());
    drop(server);
}
