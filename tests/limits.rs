//! Connection limits, file-descriptor exhaustion and idle timeouts.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

#[test]
fn max_conns_refuses_the_extra_client() {
    let mut server = Server::start(&["--max-conns", "2"]);
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

    server.signal(Signal::SIGTERM);
    let st = server.final_stats();
    assert!(stat(&st, "refused") >= 1, "refused: {st:?}");
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn out_of_file_descriptors_is_survived() {
    const CLIENTS: usize = 100;
    let mut server = Server::builder().nofile(64).args(["--workers", "2"]).spawn();
    let addr = server.addr();

    // Connects complete in the kernel backlog even when the server cannot accept.
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    let warn = server.expect_line("file descriptors", BOUND);
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
    let mut server = Server::start(&["--idle-timeout", "1"]);
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

    server.signal(Signal::SIGTERM);
    let st = server.final_stats();
    assert!(stat(&st, "timeouts") >= 1, "timeouts: {st:?}");
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn is_closed_treats_timeout_as_open() {
    // Guard against a helper bug that would make the tests above vacuous.
    assert!(!is_closed(&Err(std::io::Error::from(ErrorKind::WouldBlock))));
    assert!(!is_closed(&Ok(1)));
    assert!(is_closed(&Ok(0)));
}
