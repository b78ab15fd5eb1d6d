//! Graceful shutdown: owed bytes are delivered, idle clients are closed, a
//! second signal aborts the drain with 130, and the drain is bounded by
//! --shutdown-timeout.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const MIB: u64 = 1024 * 1024;

#[test]
fn sigterm_delivers_owed_bytes_then_eof() {
    const SEED: u64 = 0x0DED_0001;
    let mut server = Server::start(&[]);
    let mut c = connect(server.addr());

    // Write without reading until the server stops reading because its own
    // sends are stuck: it now holds echo data it owes us.
    let mut written = 0u64;
    write_until_stalled(&c, SEED, &mut written, 256 * MIB);
    assert!(written > 0);
    assert!(written < 256 * MIB, "the server never stopped reading from a client that does not read");
    // We are done sending; the server owes exactly `written` bytes.
    c.shutdown(Shutdown::Write).unwrap();

    server.signal(Signal::SIGTERM);
    server.expect_line("shutdown requested", BOUND);
    server.assert_alive();

    // Only now start reading: everything must arrive, byte-exact, then EOF.
    if let Err(e) = read_pattern_to_eof(&mut c, SEED, written) {
        panic!("after SIGTERM the client wrote {written} bytes and got back: {e}");
    }

    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown complete", BOUND);
}

#[test]
fn sigterm_closes_idle_client() {
    let mut server = Server::start(&[]);
    let mut c = connect(server.addr());
    echo_on(&c, b"hello, then idle");

    server.signal(Signal::SIGTERM);
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(matches!(r, Ok(0)), "idle client should see EOF on shutdown, read gave {r:?}");

    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown complete", BOUND);
}

#[test]
fn second_signal_exits_at_once_with_130() {
    let mut server = Server::start(&["--shutdown-timeout", "60"]);
    // A client that never reads keeps the drain from finishing.
    let c = connect(server.addr());
    let mut written = 0u64;
    write_until_stalled(&c, 0x0DED_0002, &mut written, 256 * MIB);

    server.signal(Signal::SIGTERM);
    server.expect_line("shutdown requested", BOUND);
    server.assert_alive();

    let t = Instant::now();
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "second signal: expected exit code 130, got {status:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "exit took {:?}", t.elapsed());
    drop(c);
}

#[test]
fn shutdown_timeout_bounds_the_drain() {
    let mut server = Server::start(&["--shutdown-timeout", "1"]);
    let c = connect(server.addr());
    let mut written = 0u64;
    write_until_stalled(&c, 0x0DED_0003, &mut written, 256 * MIB);

    let t = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown complete", BOUND);
    // The client never read, so the drain could not finish: the server must
    // have waited for the timeout rather than dropping the client at once.
    assert!(
        took >= Duration::from_millis(500),
        "server exited after {took:?}, without waiting for the 1 s drain timeout"
    );
    drop(c);
}
