//! A small TLS echo server, so the load tool's TLS client is tested on its own: std threads, a
//! buffered rustls `ServerConnection` per connection, and a certificate made by rcgen at start
//! (SANs "localhost" and 127.0.0.1), written to PEM files for `--tls-ca` and for servers that
//! take `--tls-cert`/`--tls-key`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::BOUND;
use super::run::TempPath;

/// A self-signed certificate and its key, in memory and as PEM files (removed on drop).
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub cert_pem: TempPath,
    pub key_pem: TempPath,
}

impl TestCert {
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen makes a certificate");
        let (cert_pem, key_pem) = (TempPath::new("crt"), TempPath::new("key"));
        std::fs::write(&cert_pem.0, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key_pem.0, made.signing_key.serialize_pem()).expect("write the key");
        TestCert {
            cert: made.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()),
            cert_pem,
            key_pem,
        }
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .expect("the certificate and key match");
        Arc::new(config)
    }
}

/// The echo server; stopped on drop.
pub struct TlsEcho {
    pub addr: SocketAddr,
    pub cert: TestCert,
    /// Sessions whose handshake completed.
    pub handshakes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TlsEcho {
    pub fn start() -> TlsEcho {
        let cert = TestCert::new();
        let config = cert.server_config();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let handshakes = Arc::new(AtomicU64::new(0));
        let (stopped, counted) = (Arc::clone(&stop), Arc::clone(&handshakes));
        thread::spawn(move || {
            for tcp in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let (config, counted) = (Arc::clone(&config), Arc::clone(&counted));
                thread::spawn(move || serve(tcp, config, &counted));
            }
        });
        TlsEcho { addr, cert, handshakes, stop }
    }
}

/// Echo one session until the client goes (or goes quiet for `BOUND`).
fn serve(tcp: TcpStream, config: Arc<ServerConfig>, handshakes: &AtomicU64) {
    let _ = tcp.set_read_timeout(Some(BOUND));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(config) else { return };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut counted = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // `read` drives the handshake first; an empty read is the client's close_notify.
        let n = match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !counted && !tls.conn.is_handshaking() {
            counted = true;
            handshakes.fetch_add(1, Ordering::SeqCst);
        }
        if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
            break;
        }
    }
    if !counted && !tls.conn.is_handshaking() {
        handshakes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
