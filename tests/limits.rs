//! Connection limits, file-descriptor exhaustion and timeouts: each limit stops only the client
//! that hit it, tells it why (chat: an ERROR line) or closes it cleanly (echo), and is counted in
//! /metrics and logged at most once per 10 s.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

// Tests that read the server's log or limit its descriptors run the binary; the others run it
// embedded in this process (`embedded::Server`), whose returned stats count every limit hit.
use common::*;
use irc::{Client, WAIT};
use nix::sys::signal::Signal;

/// Connects from a chosen loopback source address (every 127.0.0.0/8 address works on Linux).
fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into()).expect("bind the source address");
    socket.connect_timeout(&addr.into(), BOUND).unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Polls `/metrics` until `name` reaches `want` (the server has no push signal for "a socket
/// closed"); panics after [`BOUND`].
fn wait_metric(metrics: SocketAddr, name: &str, want: u64) {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = scrape(metrics, name);
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {got:?}, expected {want}");
        thread::sleep(Duration::from_millis(20)); // pacing between scrapes, not synchronisation
    }
}

/// A chat server (flood control off) with metrics on; returns it with its metrics address.
fn chat_with_metrics(extra: &[&str]) -> (Server, SocketAddr) {
    let mut server = chat_server(&[&["--metrics-listen", "127.0.0.1:0"], extra].concat());
    let metrics = metrics_addr(&mut server);
    (server, metrics)
}

/// Reads the ERROR line a refused or dropped chat client gets, then EOF.
fn expect_error_and_close(c: &mut Client, reason: &str) {
    let lines = c.expect_closed(WAIT);
    let error = lines.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| panic!("no ERROR line, got: {lines:?}"));
    assert!(error.last().contains(reason), "ERROR line {error} does not say {reason:?}");
}

#[test]
fn max_conns_per_ip_refuses_only_that_address() {
    let mut server = Server::start(&["--max-conns-per-ip", "2", "--metrics-listen", "127.0.0.1:0"]);
    let (addr, metrics) = (server.addr(), metrics_addr(&mut server));
    let here = Ipv4Addr::new(127, 0, 0, 1);
    let a = connect_from(here, addr);
    echo_on(&a, b"first");
    let b = connect_from(here, addr);
    echo_on(&b, b"second");

    let mut c = connect_from(here, addr);
    let r = c.read(&mut [0u8; 16]);
    assert!(is_closed(&r), "a third connection from {here} was not closed (read gave {r:?})");
    let other = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
    echo_on(&other, b"another address has its own allowance");
    echo_on(&a, b"the admitted ones are unaffected");
    assert_eq!(limit_hits(metrics, "max_conns_per_ip"), 1);
    server.expect_line("--max-conns-per-ip reached", BOUND);

    // A closed connection gives its slot back.
    drop(a);
    wait_metric(metrics, "echoport_connections_open", 2);
    let d = connect_from(here, addr);
    echo_on(&d, b"a freed slot is reused");
    drop((b, c, d, other));

    server.signal(Signal::SIGTERM);
    let st = server.final_stats();
    assert_eq!(stat(&st, "refused"), 1, "{st:?}");
    assert_eq!(server.wait_exit(BOUND).code(), Some(0));
}

#[test]
fn chat_refusals_say_why() {
    let server = embedded::chat_server(&["--max-conns-per-ip", "1", "--max-conns", "2"]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut again = Client::from_stream(connect_from(Ipv4Addr::LOCALHOST, addr), "alice-again");
    expect_error_and_close(&mut again, "Too many connections from your address");

    let mut bob = Client::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), addr), "bob");
    bob.register("bob");
    let mut third = Client::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 3), addr), "carol");
    expect_error_and_close(&mut third, "Server full");

    alice.assert_quiet("refusals reach no one else");
    bob.assert_quiet("refusals reach no one else");
    let st = server.stop();
    assert_eq!(st.hits("max_conns_per_ip"), 1, "{st:?}");
    assert_eq!(st.hits("max_conns"), 1, "{st:?}");
}

#[test]
fn slowloris_is_dropped_by_the_line_timeout() {
    let (mut server, metrics) = chat_with_metrics(&["--line-timeout", "1"]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    alice.join("#c");
    let mut slow = Client::registered(addr, "slow");
    slow.join("#c");
    alice.expect(|m| m.is("JOIN") && m.nick() == "slow", WAIT);

    // Half a line, and never its end.
    slow.send_raw(b"PRIVMSG #c :never fin");
    let started = Instant::now();
    expect_error_and_close(&mut slow, "Read timeout");
    assert!(started.elapsed() >= Duration::from_millis(500), "dropped after only {:?}", started.elapsed());
    let quit = alice.expect(|m| m.is("QUIT"), WAIT);
    assert_eq!(quit.nick(), "slow");

    // Complete lines, however slow, are not what the limit is about; an idle client stays.
    alice.assert_quiet("alice is still served");
    assert_eq!(limit_hits(metrics, "line_timeout"), 1);
    server.expect_line("--line-timeout", BOUND);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOUND).code(), Some(0));
}

#[test]
fn max_line_bytes_rejects_longer_lines_with_417() {
    let server = embedded::chat_server(&["--max-line-bytes", "100"]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    alice.join("#c");
    let mut bob = Client::registered(addr, "bob");
    bob.join("#c");
    alice.expect(|m| m.is("JOIN") && m.nick() == "bob", WAIT);

    let fits = format!("PRIVMSG #c :{}", "f".repeat(100 - 2 - 12));
    bob.send(&fits);
    assert_eq!(alice.expect_cmd("PRIVMSG").last().len(), 100 - 2 - 12);
    bob.send(&format!("PRIVMSG #c :{}", "x".repeat(100)));
    let reply = bob.expect(|m| m.is_numeric(), WAIT);
    assert!(reply.is("417"), "expected 417 ERR_INPUTTOOLONG, got {reply}");
    alice.assert_quiet("the overlong line was not relayed");
    bob.assert_quiet("the connection goes on");
    let st = server.stop();
    assert_eq!(st.hits("line_too_long"), 1, "{st:?}");
}

#[test]
fn limit_hits_are_all_counted_but_logged_once() {
    const REFUSED: u64 = 30;
    let mut server = Server::start(&["--max-conns", "1", "--metrics-listen", "127.0.0.1:0"]);
    let (addr, metrics) = (server.addr(), metrics_addr(&mut server));
    let held = connect(addr);
    echo_on(&held, b"holding the only slot");
    for i in 0..REFUSED {
        let mut c = connect(addr);
        let r = c.read(&mut [0u8; 16]);
        assert!(is_closed(&r), "refused connection {i} was not closed (read gave {r:?})");
    }
    assert_eq!(limit_hits(metrics, "max_conns"), REFUSED);
    server.signal(Signal::SIGTERM);
    server.wait_exit(BOUND);
    let logged = server.lines().iter().filter(|l| l.contains("--max-conns reached")).count();
    // One line per 10 s window; a very slow box may cross into a second window.
    assert!((1..=2).contains(&logged), "{logged} log lines for {REFUSED} refusals:\n{}", server.log());
}

#[test]
fn max_conns_refuses_the_extra_client() {
    let server = embedded::Server::start(&["--max-conns", "2"]);
    let addr = server.addr();

    let a = connect(addr);
    echo_on(&a, b"first");
    let b = connect(addr);
    echo_on(&b, b"second");

    // The third connection is over the limit: the server closes it at once.
    let mut c = connect(addr);
    let mut buf = [0u8; 64];
    let started = Instant::now();
    let r = c.read(&mut buf);
    assert!(is_closed(&r), "third client was not closed by the server (read gave {r:?} after {:?})", started.elapsed());
    drop(c);

    // The two admitted clients are unaffected.
    echo_on(&a, b"first again");
    echo_on(&b, b"second again");
    server.assert_alive();

    let st = server.stop();
    assert!(st.totals.refused >= 1, "refused: {st:?}");
}

#[test]
fn out_of_file_descriptors_is_survived() {
    const CLIENTS: usize = 100;
    let mut server = Server::builder().nofile(64).args(["--workers", "2"]).spawn();
    let addr = server.addr();

    // Connects complete in the kernel backlog even when the server cannot accept.
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    let warn = server.expect_line("out of file descriptors", BOUND);
    eprintln!("server warned: {warn}");
    server.assert_alive();

    // The earliest clients were accepted (the backlog is FIFO) and still echo.
    for (i, c) in clients.iter().take(5).enumerate() {
        try_echo_on(c, format!("client {i} still served").as_bytes())
            .unwrap_or_else(|e| panic!("early client {i} no longer echoes: {e}"));
    }
    server.assert_alive();
    drop(clients);

    // Once the descriptors are free again, a new client is served. The server
    // may still be backing off or draining the closed backlog, so a new
    // connection that is closed on us is retried a bounded number of times.
    let data = Rng::new(64).bytes(32 * 1024);
    let deadline = Instant::now() + BOUND;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_echo_roundtrip(addr, &data) {
            Ok(got) if got == data => break,
            other => {
                let what = match other {
                    Ok(got) => format!("{} of {} bytes echoed", got.len(), data.len()),
                    Err(e) => e.to_string(),
                };
                assert!(
                    attempts < 20 && Instant::now() < deadline,
                    "no correct echo after fd exhaustion ended ({attempts} attempts, last: {what})"
                );
                // Pacing between retries, not synchronisation.
                thread::sleep(Duration::from_millis(250));
            }
        }
    }
    server.assert_alive();

    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn idle_client_is_closed_by_idle_timeout() {
    let server = embedded::Server::start(&["--idle-timeout", "1"]);
    let addr = server.addr();

    let mut c = connect(addr);
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    echo_on(&c, b"now going idle");
    let idle_since = Instant::now();
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    let waited = idle_since.elapsed();
    assert!(is_closed(&r), "idle client not closed by the server within 15 s (read gave {r:?} after {waited:?})");
    assert!(
        waited >= Duration::from_millis(500),
        "idle client closed after only {waited:?}, before the 1 s idle timeout"
    );

    // The server keeps serving active clients.
    echo_roundtrip(addr, b"active client");

    let st = server.stop();
    assert!(st.totals.timeouts >= 1, "timeouts: {st:?}");
}

#[test]
fn is_closed_treats_timeout_as_open() {
    // Guard against a helper bug that would make the tests above vacuous.
    assert!(!is_closed(&Err(std::io::Error::from(ErrorKind::WouldBlock))));
    assert!(!is_closed(&Ok(1)));
    assert!(is_closed(&Ok(0)));
}

#[test]
fn a_quitting_client_that_never_reads_its_last_lines_is_closed_anyway() {
    use socket2::{Domain, Socket, Type};
    let server = embedded::chat_server(&["--sendq-bytes", "268435456", "--metrics-listen", "127.0.0.1:0"]);
    let (addr, metrics) = (server.addr(), server.metrics_addr());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), BOUND).unwrap();
    let mut deaf = Client::from_stream(socket.into(), "deaf");
    deaf.register("deaf");
    // Megabytes of PONGs for a client that never reads them: more than the kernel buffers hold,
    // so the rest waits in the server's queue, behind which QUIT's ERROR line never gets out.
    let ping = format!("PING :{}\r\n", "p".repeat(400));
    for _ in 0..40 {
        deaf.send_raw(ping.repeat(500).as_bytes());
    }
    deaf.send_raw(b"QUIT :bye\r\n");
    wait_metric(metrics, "echoport_chat_clients", 0);
    // Gone from the chat at once; its connection is closed within the grace period (10 s).
    wait_metric(metrics, "echoport_connections_open", 0);
    let mut other = Client::registered(addr, "other");
    other.assert_quiet("the server goes on");
    server.stop();
}
