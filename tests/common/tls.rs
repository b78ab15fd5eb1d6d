//! TLS for the integration tests: self-signed certificates made at test time (nothing private is
//! committed), written to a temporary directory the server reads; a blocking rustls client that
//! trusts exactly the certificates a test names; a plaintext tunnel through it, so the IRC test
//! client (tests/common/irc.rs) speaks over TLS unchanged; and raw handshake bytes for the abuse
//! tests.
//!
//! The client keeps every wait bounded: its socket has the same read and write timeouts as
//! [`super::connect`].

use super::{BOUND, IO_TIMEOUT, Server, connect, embedded};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The name the clients ask for; the certificates also name 127.0.0.1.
pub const SERVER_NAME: &str = "localhost";

/// A self-signed certificate (SAN localhost and 127.0.0.1) and its key, in memory.
pub struct Pair {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    /// PKCS#8, as rcgen writes it.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Pair {
    /// A fresh pair: every call gives a different key, so two pairs tell servers apart.
    pub fn new() -> Pair {
        let names = vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("generate a test certificate");
        let (der, cert_pem) = (made.cert.der().clone(), made.cert.pem());
        Pair { der, cert_pem, key_pem: made.signing_key.serialize_pem(), key_der: made.signing_key.serialize_der() }
    }

    /// The same key as SEC1 (`EC PRIVATE KEY`, the curve named inside, as `openssl ec` writes it):
    /// the ECPrivateKey that PKCS#8 wraps, with the curve from PKCS#8's algorithm added as [0].
    pub fn sec1_key_pem(&self) -> String {
        let (info, _) = der_item(&self.key_der, 0x30);
        let (_version, rest) = der_item(info, 0x02);
        let (algorithm, rest) = der_item(rest, 0x30);
        let (ec_key, _) = der_item(rest, 0x04);
        let (_ec_public_key_oid, curve) = der_item(algorithm, 0x06);
        let (fields, _) = der_item(ec_key, 0x30);
        let (_, after_version) = der_item(fields, 0x02);
        let (_, after_private) = der_item(after_version, 0x04);
        let head = &fields[..fields.len() - after_private.len()];
        let body = [head, &der(0xa0, curve), after_private].concat();
        let b64 = <base64ct::Base64 as base64ct::Encoding>::encode_string(&der(0x30, &body));
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).expect("base64")).collect();
        format!("-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n", lines.join("\n"))
    }
}

/// The contents of the DER item at the start of `input`, which must have `tag`, and what follows.
fn der_item(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input.first(), Some(&tag), "DER: expected tag {tag:#x}");
    let (len, head) = match input[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let k = usize::from(n & 0x7f);
            (input[2..2 + k].iter().fold(0, |len, b| len << 8 | usize::from(*b)), 2 + k)
        }
    };
    (&input[head..head + len], &input[head + len..])
}

/// One DER item.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..0x80 => out.push(len as u8),
        0x80..0x100 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// `--tls-cert` and `--tls-key` files in a directory of their own, removed on drop.
pub struct CertFiles {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// Files holding `pair`.
    pub fn new(pair: &Pair) -> CertFiles {
        static DIRS: AtomicU64 = AtomicU64::new(0);
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let files = CertFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem"), dir };
        files.write(pair);
        files
    }

    /// Replaces both files with `pair` (what an operator does before SIGHUP).
    pub fn write(&self, pair: &Pair) {
        self.write_cert(&pair.cert_pem);
        self.write_key(&pair.key_pem);
    }

    pub fn write_cert(&self, pem: &str) {
        std::fs::write(&self.cert, pem).unwrap_or_else(|e| panic!("write {}: {e}", self.cert.display()));
    }

    pub fn write_key(&self, pem: &str) {
        std::fs::write(&self.key, pem).unwrap_or_else(|e| panic!("write {}: {e}", self.key.display()));
    }

    /// The server flags for one TLS listener on a free loopback port with these files.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_owned();
        ["--tls-listen".into(), "127.0.0.1:0".into(), "--tls-cert".into(), path(&self.cert)]
            .into_iter()
            .chain(["--tls-key".into(), path(&self.key)])
            .collect()
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The echoport binary with `extra` and one TLS listener serving `files`.
pub fn server(files: &CertFiles, extra: &[&str]) -> Server {
    let server = Server::builder().args(files.args()).args(extra).spawn();
    assert!(!server.tls_addrs().is_empty(), "the listening line names no tls= address:\n{}", server.log());
    server
}

/// echoport embedded in this process with `extra` and one TLS listener serving `files`.
pub fn embedded(files: &CertFiles, extra: &[&str]) -> embedded::Server {
    let args = files.args();
    let all: Vec<&str> = args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
    let server = embedded::Server::start(&all);
    assert!(!server.tls_addrs().is_empty(), "local_tls_addrs() is empty with --tls-listen");
    server
}

/// A client configuration that trusts exactly `trust`, offers `versions` (rustls's defaults
/// otherwise) and never resumes, with the ring provider the server uses: no process-wide default
/// is installed.
pub fn config(trust: &[&CertificateDer<'static>], versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in trust {
        roots.add((*der).clone()).expect("a test certificate as a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = if versions.is_empty() { rustls::DEFAULT_VERSIONS } else { versions };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("the ring provider supports these versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed one shows the certificate of the session it
    // resumes, not the one the server holds now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The TLS records a client sends first: its ClientHello, as rustls writes it for `config`.
pub fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let mut conn = ClientConnection::new(config, server_name()).expect("a client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write into a Vec");
    }
    out
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

/// Makes a rustls error an `io::Error` that still says what TLS objected to.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// A blocking TLS client connection. Reading and writing take `&self`, so one thread may read
/// while another writes (an echo of 256 KiB must be read while it is being sent, or both sides'
/// buffers fill): the connection state is behind a lock neither holds while it waits on the
/// socket. At most one thread writes at a time (`send` orders the records on the wire).
pub struct TlsClient {
    state: Mutex<State>,
    send: Mutex<()>,
    sock: TcpStream,
}

struct State {
    conn: ClientConnection,
    /// Bytes read from the socket that rustls has not taken yet (it takes no more records while
    /// decrypted data waits to be read).
    pending: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` and completes a handshake that trusts `pair` alone; panics if it fails.
    pub fn connect(addr: SocketAddr, pair: &Pair) -> TlsClient {
        TlsClient::try_connect(addr, config(&[&pair.der], &[]))
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"))
    }

    /// Connects to `addr` and completes the handshake, or says why it failed.
    pub fn try_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsClient> {
        let mut sock = connect(addr);
        let mut conn = ClientConnection::new(config, server_name()).map_err(tls_error)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(TlsClient { state: Mutex::new(State { conn, pending: Vec::new() }), send: Mutex::new(()), sock })
    }

    /// The certificate the server presented.
    pub fn peer_cert(&self) -> CertificateDer<'static> {
        let state = self.state.lock().unwrap();
        state.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").clone()
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.state.lock().unwrap().conn.protocol_version()
    }

    /// The TCP socket underneath (to half-close it, reset it, or read raw bytes after a test is
    /// done with TLS).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Sends a close_notify alert (and nothing else: the socket stays open both ways).
    pub fn close_notify(&self) -> io::Result<()> {
        let _order = self.send.lock().unwrap();
        let out = {
            let mut state = self.state.lock().unwrap();
            state.conn.send_close_notify();
            drain(&mut state.conn)?
        };
        (&self.sock).write_all(&out)
    }

    /// Writes `data` and reads its echo back (from a second thread, as the echo arrives while
    /// `data` is still going out), in writes whose sizes `chunk` picks; compares byte for byte.
    pub fn echo(&self, data: &[u8], mut chunk: impl FnMut() -> usize + Send) -> io::Result<()> {
        thread::scope(|sc| {
            let writer = sc.spawn(move || -> io::Result<()> {
                let mut w = self;
                let mut rest = data;
                while !rest.is_empty() {
                    let n = chunk().clamp(1, rest.len());
                    w.write_all(&rest[..n])?;
                    rest = &rest[n..];
                }
                Ok(())
            });
            let mut got = vec![0u8; data.len()];
            let mut r = self;
            let read = r.read_exact(&mut got).map_err(|e| super::explain_timeout(e, "reading the echo"));
            let wrote = writer.join().expect("writer thread panicked");
            read?;
            wrote?;
            match super::first_diff(&got, data) {
                None => Ok(()),
                Some(at) => Err(io::Error::other(format!("echo differs at byte {at} of {}", data.len()))),
            }
        })
    }
}

/// Every TLS byte rustls has queued for the peer.
fn drain(conn: &mut ClientConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}

impl Read for &TlsClient {
    /// Plaintext as it arrives; `Ok(0)` after the server's close_notify, an `UnexpectedEof` error
    /// if the TCP connection ended without one.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut raw = vec![0u8; 32 * 1024];
        loop {
            {
                let mut state = self.state.lock().unwrap();
                match state.conn.reader().read(buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    done => return done,
                }
                if !state.pending.is_empty() {
                    let State { conn, pending } = &mut *state;
                    let taken = conn.read_tls(&mut pending.as_slice())?;
                    if taken == 0 {
                        return Err(io::Error::other("rustls took no bytes and had no plaintext"));
                    }
                    pending.drain(..taken);
                    conn.process_new_packets().map_err(tls_error)?;
                    continue;
                }
            }
            let n = (&self.sock).read(&mut raw)?;
            let mut state = self.state.lock().unwrap();
            if n == 0 {
                // Tells rustls the stream ended, so its reader reports a truncated or clean end.
                state.conn.read_tls(&mut &[][..])?;
                state.conn.process_new_packets().map_err(tls_error)?;
            } else {
                state.pending.extend_from_slice(&raw[..n]);
            }
        }
    }
}

impl Write for &TlsClient {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let _order = self.send.lock().unwrap();
        let (n, out) = {
            let mut state = self.state.lock().unwrap();
            let n = state.conn.writer().write(data)?;
            (n, drain(&mut state.conn)?)
        };
        // Outside the state lock: a reader may need it while this write waits for the peer.
        (&self.sock).write_all(&out)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A plaintext TCP stream whose bytes travel over `tls` (two relay threads, which end when either
/// side closes): hands a TLS connection to code written for `TcpStream`, such as the IRC client.
pub fn tunnel(tls: TlsClient) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a tunnel listener");
    let near = connect(listener.local_addr().expect("the tunnel's address"));
    let (far, _) = listener.accept().expect("accept the tunnel");
    // The relay waits as long as the test keeps the connection: it ends when either side does.
    far.set_read_timeout(None).unwrap();
    tls.sock.set_read_timeout(None).unwrap();
    let tls = Arc::new(tls);
    let (up_far, up_tls) = (far.try_clone().expect("clone"), Arc::clone(&tls));
    thread::spawn(move || {
        let _ = io::copy(&mut &up_far, &mut &*up_tls);
        // The test closed its end: tell the server, then stop the other direction too.
        let _ = up_tls.close_notify();
        let _ = up_tls.sock.shutdown(Shutdown::Both);
    });
    thread::spawn(move || {
        let _ = io::copy(&mut &*tls, &mut &far);
        let _ = far.shutdown(Shutdown::Both);
    });
    near
}

/// Reads what the server sends until it closes the connection (EOF or reset), at most `BOUND`;
/// the bytes read, or an error if it did not close in time.
pub fn raw_until_closed(sock: &TcpStream) -> io::Result<Vec<u8>> {
    let mut sock = sock;
    sock.set_read_timeout(Some(BOUND))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(super::explain_timeout(e, "waiting for the server to close")),
        }
    }
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(out)
}
