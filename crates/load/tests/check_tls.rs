//! `echoport check --tls`: the probe (echoport's library function, as the `check` subcommand
//! calls it) against the rustls echo server of tests/common/tls_echo.rs and against a plain
//! echoport, on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::Server;
use common::tls_echo::TlsEcho;
use echoport::config::{CheckArgs, Mode};

fn args(target: SocketAddr, insecure: bool, tls_ca: Option<PathBuf>) -> CheckArgs {
    CheckArgs { target: Some(target), timeout: Duration::from_secs(5), mode: Mode::Echo, tls: true, insecure, tls_ca }
}

#[test]
fn check_tls_probes_through_the_session() {
    let server = TlsEcho::start();
    let ok = echoport::check::run(&args(server.addr, true, None)).expect("--insecure accepts the self-signed cert");
    assert!(ok.starts_with("ok: echo round trip over TLS with "), "{ok}");

    let ca = server.cert.cert_pem.0.clone();
    let ok = echoport::check::run(&args(server.addr, false, Some(ca))).expect("verified against --tls-ca");
    assert!(ok.contains("over TLS"), "{ok}");

    // A certificate that does not chain to --tls-ca: the handshake fails, and says so.
    let other = TlsEcho::start();
    let err = echoport::check::run(&args(other.addr, false, Some(server.cert.cert_pem.0.clone()))).unwrap_err();
    assert!(err.contains("TLS handshake failed") && err.contains("certificate"), "{err}");

    let err = echoport::check::run(&args(server.addr, false, None)).unwrap_err();
    assert!(err.contains("--tls-ca") && err.contains("--insecure"), "{err}");
    let err = echoport::check::run(&args(server.addr, false, Some("/nonexistent/ca.pem".into()))).unwrap_err();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn check_tls_against_a_plain_server_fails_the_handshake() {
    // A plain echo server sends the ClientHello back, which is no ServerHello.
    let server = Server::start(&[]);
    let err = echoport::check::run(&args(server.addr(), true, None)).unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
}
