//! TLS listeners (--tls-listen): real handshakes over 127.0.0.1 with a rustls client that trusts
//! exactly the test's own certificate (made at test time, tests/common/tls.rs). Echo is byte-exact
//! through TLS, both TLS versions negotiate, chat clients on TLS and plain listeners share one
//! network (WHOIS 671, the sts capability), Python's ssl module chats too, SIGHUP swaps the
//! certificate without dropping anyone, and hostile handshakes are closed and counted without
//! disturbing a client that keeps echoing beside them.

// SIGHUP, and the Python client; the Windows build has its own suite (tests/windows.rs).
#![cfg(unix)]

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::tls::{self, CertFiles, Pair, TlsClient};
use common::*;
use irc::{Client, Message, WAIT, show};
use nix::sys::signal::Signal;
use rustls::ProtocolVersion;

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

#[test]
fn tls_listen_without_a_certificate_and_key_is_a_start_up_error_naming_them() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let cert = files.cert.to_str().expect("a UTF-8 path");
    for args in [&["--tls-listen", "127.0.0.1:0"][..], &["--tls-listen", "127.0.0.1:0", "--tls-cert", cert]] {
        let mut cmd = Command::new(bin());
        cmd.args(["--listen", "127.0.0.1:0"]).args(args).env_clear();
        let ran = run_bounded(cmd, BOUND);
        assert!(ran.status.is_some_and(|s| !s.success()), "{args:?} started: {ran:?}");
        assert!(ran.stderr.contains("--tls-key"), "{args:?}: the error does not name --tls-key:\n{}", ran.stderr);
    }
}

#[test]
fn the_listening_line_names_the_tls_addresses_in_text_and_json_logs() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    for format in ["text", "json"] {
        let server = tls::server(&files, &["--log-format", format]);
        assert_eq!(server.addrs().len(), 1, "{format}: plain addresses {:?}", server.addrs());
        assert!(server.tls_addr() != server.addr(), "{format}: the TLS address is the plain one");
        TlsClient::connect(server.tls_addr(), &pair).echo(b"ok", || 1).unwrap_or_else(|e| panic!("{format}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// Echo
// ---------------------------------------------------------------------------

#[test]
fn echo_through_tls_is_byte_exact_with_random_sizes_and_chunking() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let server = tls::embedded(&files, &[]);
    let (tls_addr, plain_addr) = (server.tls_addr(), server.addr());
    const ROUNDS: usize = 6;
    const MAX: u64 = 256 * 1024;
    thread::scope(|sc| {
        let pair = &pair;
        let mut clients: Vec<_> = (0..4u64)
            .map(|i| {
                sc.spawn(move || {
                    let c = TlsClient::connect(tls_addr, pair);
                    let mut rng = Rng::new(0x7150 + i);
                    // The smallest and the largest sizes every time, the rest at random.
                    for round in 0..ROUNDS {
                        let len = match round {
                            0 => 1,
                            1 => MAX,
                            _ => rng.range(1, MAX),
                        } as usize;
                        let data = rng.bytes(len);
                        // Writes of a few bytes (many tiny records), of a few KiB, and of more
                        // than one record's 16 KiB, mixed.
                        let mut sizes = Rng::new(rng.next_u64());
                        let chunk = move || match sizes.range(0, 2) {
                            0 => sizes.range(1, 16),
                            1 => sizes.range(17, 4096),
                            _ => sizes.range(4097, 70_000),
                        } as usize;
                        c.echo(&data, chunk).unwrap_or_else(|e| panic!("TLS client {i}, round {round}, {len} B: {e}"));
                    }
                })
            })
            .collect();
        // A plain client on --listen at the same time.
        clients.push(sc.spawn(move || {
            let s = connect(plain_addr);
            let mut rng = Rng::new(0x9147);
            for _ in 0..ROUNDS {
                let len = rng.range(1, MAX) as usize;
                echo_on(&s, &rng.bytes(len));
            }
        }));
        for c in clients {
            c.join().expect("a client failed");
        }
    });
    let stats = server.stop();
    assert_eq!(stats.totals.errors, 0, "{stats:?}");
}

/// README: the key may be PKCS#8 (rcgen's, every other test) or SEC1.
#[test]
fn a_sec1_key_serves_like_its_pkcs8_form() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let sec1 = pair.sec1_key_pem();
    files.write_key(&sec1);
    let server = tls::embedded(&files, &[]);
    let c = TlsClient::connect(server.tls_addr(), &pair);
    c.echo(b"served with a SEC1 key", || 4).unwrap();
    // The conversion is right: rustls reads it as SEC1 and the same key.
    let parsed =
        <rustls::pki_types::PrivateKeyDer as rustls::pki_types::pem::PemObject>::from_pem_slice(sec1.as_bytes());
    assert!(matches!(parsed, Ok(rustls::pki_types::PrivateKeyDer::Sec1(_))), "{sec1}");
}

#[test]
fn tls12_and_tls13_both_negotiate() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let server = tls::embedded(&files, &[]);
    let versions =
        [(&rustls::version::TLS12, ProtocolVersion::TLSv1_2), (&rustls::version::TLS13, ProtocolVersion::TLSv1_3)];
    for (offer, want) in versions {
        let c = TlsClient::try_connect(server.tls_addr(), tls::config(&[&pair.der], &[offer]))
            .unwrap_or_else(|e| panic!("a client offering only {want:?}: {e}"));
        assert_eq!(c.version(), Some(want));
        let msg = format!("echoed over {want:?}");
        c.echo(msg.as_bytes(), || 7).unwrap_or_else(|e| panic!("{want:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

/// An IRC client whose connection is TLS to the server's first TLS listener.
fn tls_irc(addr: SocketAddr, pair: &Pair, name: &str) -> Client {
    Client::from_stream(tls::tunnel(TlsClient::connect(addr, pair)), name)
}

/// WHOIS `nick` up to its 318; the replies.
fn whois(c: &mut Client, nick: &str) -> Vec<Message> {
    c.send(&format!("WHOIS {nick}"));
    c.collect_until(|m| m.is("318") || m.is_error_numeric(), WAIT)
}

fn says_secure(burst: &[Message], nick: &str) -> bool {
    burst.iter().any(|m| m.is("671") && m.param(1) == nick && m.last().contains("secure connection"))
}

#[test]
fn chat_tls_and_plain_clients_share_a_channel_and_whois_marks_the_tls_one() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let server = tls::embedded(&files, &embedded::chat_args(&[]));
    let mut secure = tls_irc(server.tls_addr(), &pair, "secure");
    secure.register("secure");
    let mut plain = Client::registered(server.addr(), "plain");
    secure.join("#mixed");
    plain.join("#mixed");
    secure.expect(|m| m.is("JOIN") && m.nick() == "plain", WAIT);

    secure.send("PRIVMSG #mixed :sent over TLS");
    plain.expect(|m| m.is("PRIVMSG") && m.nick() == "secure" && m.last() == "sent over TLS", WAIT);
    plain.send("PRIVMSG #mixed :sent in the clear");
    secure.expect(|m| m.is("PRIVMSG") && m.nick() == "plain" && m.last() == "sent in the clear", WAIT);
    plain.send("PRIVMSG secure :private, in the clear");
    secure.expect(|m| m.is("PRIVMSG") && m.param(0) == "secure" && m.last() == "private, in the clear", WAIT);

    for asker in [&mut plain, &mut secure] {
        let about_tls = whois(asker, "secure");
        assert!(says_secure(&about_tls, "secure"), "WHOIS of the TLS client lacks 671:\n{}", show(&about_tls));
        let about_plain = whois(asker, "plain");
        assert!(about_plain.iter().any(|m| m.is("311")), "WHOIS plain failed:\n{}", show(&about_plain));
        assert!(!about_plain.iter().any(|m| m.is("671")), "a plain client has 671:\n{}", show(&about_plain));
    }
}

/// CAP LS 302 before registration: every capability offered (a multi-line reply joined).
fn cap_ls(c: &mut Client) -> Vec<String> {
    c.send("CAP LS 302");
    let mut caps = Vec::new();
    loop {
        let m = c.expect(|m| m.is("CAP") && m.param(1) == "LS", WAIT);
        caps.extend(m.last().split_whitespace().map(str::to_owned));
        // `CAP * LS * :...` says more lines follow.
        if m.params.len() < 4 {
            return caps;
        }
    }
}

/// The value of `sts=` among `caps`, split at commas.
fn sts(caps: &[String]) -> Option<Vec<String>> {
    caps.iter().find_map(|c| c.strip_prefix("sts=")).map(|v| v.split(',').map(str::to_owned).collect())
}

#[test]
fn sts_offers_the_tls_port_in_the_clear_and_a_duration_over_tls() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let quiet = tls::embedded(&files, &embedded::chat_args(&[]));
    let caps = cap_ls(&mut Client::connect(quiet.addr(), "no-sts"));
    assert_eq!(sts(&caps), None, "sts without --sts-port: {caps:?}");
    drop(quiet);

    let server = tls::embedded(&files, &embedded::chat_args(&["--sts-port", "6697", "--sts-duration", "1h"]));
    let plain = cap_ls(&mut Client::connect(server.addr(), "plain"));
    let policy = sts(&plain).unwrap_or_else(|| panic!("no sts on the plain listener: {plain:?}"));
    assert!(policy.contains(&"port=6697".to_owned()), "plain sts={policy:?}");
    let secure = cap_ls(&mut tls_irc(server.tls_addr(), &pair, "secure"));
    let policy = sts(&secure).unwrap_or_else(|| panic!("no sts on the TLS listener: {secure:?}"));
    assert!(policy.contains(&"duration=3600".to_owned()), "TLS sts={policy:?}");
    assert!(!policy.iter().any(|k| k.starts_with("port=")), "TLS sts has a port: {policy:?}");
}

/// Python's own ssl module (no PyPI package): tests/python/test_tls_chat.py.
#[test]
fn python_ssl_clients_register_join_and_talk_over_tls() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let server = tls::server(&files, &embedded::chat_args(&[]));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_tls_chat.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(&script).arg(&files.cert).arg(server.tls_addr().port().to_string());
    let ran = run_bounded(cmd, Duration::from_secs(120));
    let output = format!("{}{}", ran.stdout, ran.stderr);
    match ran.status {
        Some(st) if st.success() => {}
        Some(st) => panic!("{} exited with {st}:\n{output}\nserver log:\n{}", script.display(), server.log()),
        None => panic!("{} did not finish within 120 s:\n{output}", script.display()),
    }
    assert!(output.contains("ok: all"), "the script exited 0 without finishing:\n{output}");
}

// ---------------------------------------------------------------------------
// Certificate reload
// ---------------------------------------------------------------------------

/// Waits for the `n`th log line containing `what` (counting from the server's start).
fn expect_nth_line(server: &mut Server, what: &str, n: usize) -> String {
    let mut seen = 0;
    let found = server.wait_for_line(
        |l| {
            seen += usize::from(l.contains(what));
            seen == n
        },
        BOUND,
    );
    found.unwrap_or_else(|| panic!("no log line #{n} containing {what:?} within {BOUND:?}:\n{}", server.log()))
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_pair_keeps_the_old_one() {
    let (a, b) = (Pair::new(), Pair::new());
    let files = CertFiles::new(&a);
    let mut server = tls::server(&files, &[]);
    let addr = server.tls_addr();
    // Trusts both, so the handshake succeeds either way and the certificate tells which it was.
    let either = tls::config(&[&a.der, &b.der], &[]);
    let presents = |pair: &Pair, when: &str| {
        let c = TlsClient::try_connect(addr, Arc::clone(&either)).unwrap_or_else(|e| panic!("{when}: handshake: {e}"));
        assert!(c.peer_cert() == pair.der, "{when}: the server presented the other certificate");
        c
    };
    let first = presents(&a, "at start");
    first.echo(b"before the reload", || 4).unwrap();

    files.write(&b);
    server.signal(Signal::SIGHUP);
    expect_nth_line(&mut server, "tls: reloaded certificate", 1);
    let second = presents(&b, "after reloading B");
    first.echo(b"the connection from before the reload still echoes", || 9).unwrap();
    second.echo(b"and so does the new one", || 9).unwrap();

    // A key file that is not a key, a well-formed pair that does not match (A's certificate
    // with B's key), and no key file at all: each is refused, and B stays.
    let bad: [(&str, Option<&str>); 3] = [
        (&b.cert_pem, Some("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")),
        (&a.cert_pem, Some(&b.key_pem)),
        (&b.cert_pem, None),
    ];
    for (n, (cert, key)) in bad.into_iter().enumerate() {
        files.write_cert(cert);
        match key {
            Some(key) => files.write_key(key),
            None => std::fs::remove_file(&files.key).expect("remove the key file"),
        }
        server.signal(Signal::SIGHUP);
        let line = expect_nth_line(&mut server, "keeping the old one", n + 1);
        assert!(line.split_whitespace().nth(1) == Some("ERROR"), "not logged as an error: {line}");
        let after = presents(&b, &format!("after bad pair #{}", n + 1));
        after.echo(b"new handshakes still work", || 5).unwrap();
        first.echo(b"old connections too", || 5).unwrap();
    }
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// Abuse
// ---------------------------------------------------------------------------

/// A TLS client echoing numbered messages on one connection beside an abuse test, a little
/// apart (pacing, not synchronisation: the test waits on its progress reports). Each echo must
/// be exactly its own message, so the round trips it reports are complete and in order.
struct Pinger {
    stop: Arc<AtomicBool>,
    progress: mpsc::Receiver<u64>,
    next: u64,
    thread: Option<thread::JoinHandle<Result<u64, String>>>,
}

impl Pinger {
    /// Round trips at most (a bound on the loop; a test needs a few dozen).
    const MAX: u64 = 20_000;

    fn start(addr: SocketAddr, pair: &Pair) -> Pinger {
        let c = TlsClient::connect(addr, pair);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, progress) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for i in 0..Pinger::MAX {
                if flag.load(Ordering::Relaxed) {
                    return Ok(i);
                }
                let msg = format!("ping {i:05} through TLS\n");
                c.echo(msg.as_bytes(), || 1 + (i as usize % 7)).map_err(|e| format!("round trip {i}: {e}"))?;
                let _ = tx.send(i);
                thread::sleep(Duration::from_millis(5));
            }
            Err(format!("still running after {} round trips", Pinger::MAX))
        });
        Pinger { stop, progress, next: 0, thread: Some(thread) }
    }

    /// Waits (bounded) until `n` more round trips have completed, each the next in order.
    #[track_caller]
    fn advance(&mut self, n: u64, after: &str) {
        for _ in 0..n {
            match self.progress.recv_timeout(BOUND) {
                Ok(i) => {
                    assert_eq!(i, self.next, "round trips out of order after {after}");
                    self.next += 1;
                }
                Err(_) => {
                    let why = self.thread.take().map(|t| t.join());
                    panic!("the echoing client made no progress after {after}: {why:?}");
                }
            }
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let done = self.thread.take().expect("running").join().expect("the pinger panicked");
        let n = done.unwrap_or_else(|e| panic!("the echoing client failed: {e}"));
        assert!(n >= self.next, "{n} round trips, {} reported", self.next);
    }
}

/// Every `echoport_errors_total` series added up.
fn errors_total(metrics: SocketAddr) -> u64 {
    let (_, body) = http_get(metrics, "/metrics");
    samples(&body).into_iter().filter(|(n, _)| n.starts_with("echoport_errors_total")).map(|(_, v)| v).sum()
}

/// Polls /metrics until `read` gives `want` (no push signal exists for "a connection closed");
/// panics after [`BOUND`].
fn wait_for(metrics: SocketAddr, what: &str, want: u64, read: impl Fn(SocketAddr) -> u64) {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = read(metrics);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what} stayed at {got}, expected {want}");
        thread::sleep(Duration::from_millis(20)); // pacing between scrapes
    }
}

fn open_connections(metrics: SocketAddr) -> u64 {
    scrape(metrics, "echoport_connections_open").expect("echoport_connections_open")
}

/// Asserts that the server sent nothing but TLS alerts (content type 21) before it closed.
#[track_caller]
fn only_alerts(reply: &[u8], what: &str) {
    let mut rest = reply;
    while rest.len() >= 5 {
        assert_eq!(rest[0], 21, "{what}: the server sent a non-alert record: {:?}", &reply[..reply.len().min(64)]);
        let len = 5 + usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = &rest[len.min(rest.len())..];
    }
    assert!(rest.is_empty(), "{what}: a torn record before the close: {reply:?}");
}

#[test]
fn hostile_handshakes_and_records_are_closed_and_counted_while_others_echo() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    // A timeout far beyond BOUND: every close here is the server's answer, not the timer.
    let mut server = tls::server(&files, &["--metrics-listen", "127.0.0.1:0", "--tls-handshake-timeout", "5m"]);
    let (addr, metrics) = (server.tls_addr(), metrics_addr(&mut server));
    let mut pinger = Pinger::start(addr, &pair);
    pinger.advance(3, "start");
    let open = open_connections(metrics);
    let mut errors = errors_total(metrics);

    // Not TLS at all: an HTTP request on the TLS port.
    let s = connect(addr);
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    only_alerts(&tls::raw_until_closed(&s).expect("garbage"), "garbage instead of a ClientHello");
    errors += 1;
    wait_for(metrics, "errors after garbage", errors, errors_total);
    pinger.advance(3, "garbage");

    // A handshake record header announcing 65535 bytes (TLS allows 16 KiB + 2048).
    let s = connect(addr);
    // One write: the server may close (and reset) as soon as it has read the header.
    (&s).write_all(&[&[22, 3, 1, 0xff, 0xff][..], &[0; 64]].concat()).unwrap();
    only_alerts(&tls::raw_until_closed(&s).expect("huge record"), "a 64 KiB record header");
    errors += 1;
    wait_for(metrics, "errors after the huge record", errors, errors_total);
    pinger.advance(3, "a huge record header");

    // The same after the handshake: an application-data header of 65535 bytes.
    let c = TlsClient::connect(addr, &pair);
    c.echo(b"a good start", || 3).unwrap();
    c.socket().write_all(&[&[23, 3, 3, 0xff, 0xff][..], &[0; 64]].concat()).unwrap();
    tls::raw_until_closed(c.socket()).expect("huge record after the handshake");
    errors += 1;
    wait_for(metrics, "errors after the huge record", errors, errors_total);
    pinger.advance(3, "a huge record after the handshake");

    // close_notify, with the socket left open: the server ends the connection, it does not wait
    // for the TCP close. Data before it is still echoed (as a plain half-close would be).
    let c = TlsClient::connect(addr, &pair);
    c.echo(b"echoed before close_notify", || 5).unwrap();
    (&c).write_all(b"sent with the close_notify").unwrap();
    c.close_notify().unwrap();
    let mut got = Vec::new();
    let end = (&c).read_to_end(&mut got);
    assert_bytes_eq(&got, b"sent with the close_notify", "data sent just before close_notify");
    match end {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {} // closed without its own close_notify
        Err(e) => panic!("after close_notify: {e}"),
    }
    tls::raw_until_closed(c.socket()).expect("the TCP close after close_notify");
    pinger.advance(3, "close_notify");

    // Resets mid-handshake: after a whole ClientHello (once the server's reply has started)
    // and after half of one.
    let hello = tls::client_hello(tls::config(&[&pair.der], &[]));
    let s = connect(addr);
    (&s).write_all(&hello).unwrap();
    let n = (&s).read(&mut [0u8; 1]).expect("the server's first handshake bytes");
    assert_eq!(n, 1, "the server closed instead of answering a ClientHello");
    reset_on_close(&s);
    drop(s);
    let s = connect(addr);
    (&s).write_all(&hello[..hello.len() / 2]).unwrap();
    reset_on_close(&s);
    drop(s);
    pinger.advance(3, "resets mid-handshake");

    // Every one of them is gone from the server, not just from here.
    wait_for(metrics, "open connections", open, open_connections);
    pinger.advance(3, "all of it");
    pinger.stop();
    server.assert_alive();
    server.assert_no_warnings("hostile handshakes are logged at debug level");
}

/// A TLS client refused by a connection limit expects a handshake, so it gets no plaintext IRC
/// ERROR line: it is closed without a word, and the limit counts it.
#[test]
fn a_tls_client_refused_by_a_limit_is_closed_without_plaintext() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let extra = embedded::chat_args(&["--max-conns", "1", "--metrics-listen", "127.0.0.1:0"]);
    let mut server = tls::server(&files, &extra);
    let (addr, metrics) = (server.tls_addr(), metrics_addr(&mut server));
    let mut admitted = tls_irc(addr, &pair, "admitted");
    admitted.register("admitted");

    let refused = connect(addr);
    (&refused).write_all(&tls::client_hello(tls::config(&[&pair.der], &[]))).unwrap();
    let reply = tls::raw_until_closed(&refused).expect("the refused client is closed");
    assert!(reply.is_empty(), "a refused TLS client was sent {:?}", String::from_utf8_lossy(&reply));
    assert!(TlsClient::try_connect(addr, tls::config(&[&pair.der], &[])).is_err(), "a second client got in");
    wait_for(metrics, "max_conns hits", 2, |m| limit_hits(m, "max_conns"));
    admitted.send("PING :still here");
    admitted.expect(|m| m.is("PONG") && m.last() == "still here", WAIT);
}

#[test]
fn stalled_handshakes_are_closed_after_the_handshake_timeout() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let timeout = Duration::from_secs(1);
    let mut server = tls::server(&files, &["--metrics-listen", "127.0.0.1:0", "--tls-handshake-timeout", "1s"]);
    let (addr, metrics) = (server.tls_addr(), metrics_addr(&mut server));
    let mut pinger = Pinger::start(addr, &pair);
    let idle = TlsClient::connect(addr, &pair);
    let hello = tls::client_hello(tls::config(&[&pair.der], &[]));

    // Stalled clients spread over more than a second (pacing, not synchronisation), so that
    // whatever clock the server's timer reads, some arrive just before it ticks: each must still
    // get its whole timeout. Every other one sends half a ClientHello, the rest nothing.
    const STALLED: u64 = 6;
    let stalled: Vec<(TcpStream, Instant, &str)> = (0..STALLED)
        .map(|k| {
            if k > 0 {
                thread::sleep(Duration::from_millis(230));
            }
            let start = Instant::now();
            let s = connect(addr);
            let what = if k % 2 == 1 { "half a ClientHello" } else { "a client that sends nothing" };
            if k % 2 == 1 {
                (&s).write_all(&hello[..hello.len() / 2]).unwrap();
            }
            (s, start, what)
        })
        .collect();
    // The stalled handshakes hold nobody up meanwhile.
    pinger.advance(3, "stalled handshakes began");

    // One reader each, so every close is timed as it happens.
    thread::scope(|sc| {
        let readers: Vec<_> = stalled
            .iter()
            .map(|(s, start, what)| {
                sc.spawn(move || {
                    let reply = tls::raw_until_closed(s).unwrap_or_else(|e| panic!("{what}: {e}"));
                    (start.elapsed(), reply)
                })
            })
            .collect();
        let mut closes = Vec::new();
        for (reader, (_, _, what)) in readers.into_iter().zip(&stalled) {
            let (waited, reply) = reader.join().expect("a reader panicked");
            only_alerts(&reply, what);
            closes.push((waited, *what));
        }
        // `start` is before the connect, so the server accepted later: none may be shorter.
        let early = closes.iter().filter(|(waited, _)| *waited < timeout).count();
        assert_eq!(early, 0, "stalled clients closed before the {timeout:?} timeout, in order of arrival: {closes:?}");
    });
    wait_for(metrics, "tls_handshake_timeout hits", STALLED, |m| limit_hits(m, "tls_handshake_timeout"));
    // Finished handshakes are not subject to it: both older connections outlived it.
    idle.echo(b"idle past the handshake timeout", || 6).unwrap();
    pinger.advance(3, "the stalled handshakes were closed");
    pinger.stop();
    server.assert_alive();
}

/// A draining server tells its TLS clients why, through TLS, and does not wait out
/// --shutdown-timeout for them. (The layer once swallowed the completion it decided itself for
/// the farewell's send, so TLS clients were only cut off at the timeout, without a word.)
#[test]
fn shutdown_sends_error_over_tls_and_drains_without_the_timeout() {
    let pair = Pair::new();
    let files = CertFiles::new(&pair);
    let server = tls::embedded(&files, &embedded::chat_args(&["--shutdown-timeout", "25s"]));
    let mut secure = tls_irc(server.tls_addr(), &pair, "secure");
    secure.register("secure");
    let mut plain = Client::registered(server.addr(), "plain");
    secure.join("#drain");
    plain.join("#drain");
    secure.sync();
    let stats = server.stop();
    assert_eq!(stats.cut_off, 0, "a connection waited for --shutdown-timeout: {stats:?}");
    for c in [&mut secure, &mut plain] {
        let tail = c.expect_closed(WAIT);
        let error = tail.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| c.fail("no ERROR before EOF"));
        assert!(error.last().to_ascii_lowercase().contains("shutting down"), "{error}");
    }
}
