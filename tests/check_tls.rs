//! `echoport check --tls` as a user runs it: the real binary probing a real echoport's
//! `--tls-listen` (certificate made by rcgen at test time, SANs "localhost" and 127.0.0.1), in
//! echo and chat mode, with the exit status and the one line it prints.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{Server, bin, strip_ansi};

/// A self-signed certificate and key as PEM files in a directory of their own, removed on drop.
struct Cert {
    dir: PathBuf,
}

impl Cert {
    fn new(tag: &str) -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen makes a certificate");
        let dir = std::env::temp_dir().join(format!("echoport-check-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write the certificate");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("write the key");
        Cert { dir }
    }
    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }
    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// echoport with a plain and a TLS listener (both on ports the OS picks); the TLS address,
/// read from the `tls=` field of the `listening on` line.
fn start(cert: &Cert, extra: &[&str]) -> (Server, SocketAddr) {
    let (c, k) = (cert.cert(), cert.key());
    let mut args = vec!["--tls-listen", "127.0.0.1:0", "--tls-cert", &c, "--tls-key", &k];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let line = server.lines().into_iter().map(|l| strip_ansi(&l)).find(|l| l.contains("listening on "));
    let line = line.expect("the server logged its `listening on` line");
    let field = line.split(" tls=").nth(1).unwrap_or_else(|| panic!("no tls= field in {line:?}"));
    let addr = field.split([',', ' ', '"']).next().and_then(|a| a.parse().ok());
    (server, addr.unwrap_or_else(|| panic!("cannot parse the TLS address in {line:?}")))
}

/// `echoport check ARGS` (bounded by its own --timeout), without the environment's ECHOPORT_*.
fn check(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("check").args(["--timeout", "5s"]).args(args);
    for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("ECHOPORT_")) {
        cmd.env_remove(k);
    }
    cmd.output().expect("run echoport check")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_tls_probes_echo_mode_through_tls() {
    let cert = Cert::new("echo");
    let (server, tls) = start(&cert, &[]);
    let target = tls.to_string();

    let o = check(&["--target", &target, "--tls", "--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: echo round trip over TLS with "), "{}", text(&o));

    // Verified against the certificate itself, for the target's IP address.
    let o = check(&["--target", &target, "--tls", "--tls-ca", &cert.cert()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A certificate that does not chain to --tls-ca fails the handshake, which names the cause.
    let other = Cert::new("other");
    let o = check(&["--target", &target, "--tls", "--tls-ca", &other.cert()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS handshake failed") && err.contains("certificate"), "{}", text(&o));
    let o = check(&["--target", &target, "--tls", "--tls-ca", "/nonexistent/ca.pem"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/ca.pem"), "{}", text(&o));

    // Without a way to verify, it refuses before connecting and says what to pass.
    let o = check(&["--target", &target, "--tls"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--tls-ca") && err.contains("--insecure"), "{}", text(&o));

    // The TLS options need --tls.
    let o = check(&["--target", &target, "--insecure"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // TLS to the plain listener: the handshake fails, and the line says so.
    let o = check(&["--target", &server.addr().to_string(), "--tls", "--insecure"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("TLS handshake failed"), "{}", text(&o));
}

#[test]
fn check_tls_probes_chat_mode_through_tls() {
    let cert = Cert::new("chat");
    let (_server, tls) = start(&cert, &["--mode", "chat"]);
    let o = check(&["--target", &tls.to_string(), "--mode", "chat", "--tls", "--insecure"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: PING/PONG over TLS with "), "{}", text(&o));
}
