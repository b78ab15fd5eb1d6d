//! Faults on some connections never reach the others: clients that reset mid-send, half-close with
//! bytes owed, connect and say nothing, never read, exhaust the server's file descriptors, or are
//! streaming when SIGTERM arrives. Each test runs the fault next to well-behaved clients and checks
//! that those still get byte-exact echoes (or every chat line, in order), that the server stays up
//! with bounded memory, and that its counters and logs show nothing leaked or alarming.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

// Tests that look at none of the server's memory, descriptors, logs or signals run it embedded in
// this process (`embedded::Server`).
use common::*;
use irc::{Client, WAIT, show};
use nix::sys::signal::Signal;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Server RSS may grow this much under a fault. Generous (CI is a loaded 2-core box); what it rules
/// out is memory proportional to the data the misbehaving clients push (hundreds of MiB).
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// SIGTERM, then the clean exit every test ends with; returns the final stats.
#[track_caller]
fn stop(server: &mut Server) -> std::collections::HashMap<String, u64> {
    server.signal(Signal::SIGTERM);
    let st = server.final_stats();
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    st
}

/// How many connections the chat server holds state for, registered or not (LUSERS: 255 "I have N
/// clients" counts the registered ones, 253 the others when there are any): what tells a leak
/// from a clean disconnect.
#[track_caller]
fn chat_clients_known(c: &mut Client) -> usize {
    c.send("LUSERS");
    // 266 ends the reply: nothing of it is left for the test's next read.
    let got = c.collect_until(|m| m.is("266"), WAIT);
    let unknown = got
        .iter()
        .find(|m| m.is("253"))
        .map_or(0, |m| m.param(1).parse().unwrap_or_else(|_| c.fail(&format!("cannot read a count from {m:?}"))));
    let m = got.iter().find(|m| m.is("255")).unwrap_or_else(|| c.fail("no 255"));
    let registered: usize = m
        .last()
        .strip_prefix("I have ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| c.fail(&format!("cannot read a client count from {m:?}")));
    registered + unknown
}

/// Keeps doing byte-exact round trips of random sizes on one connection until `done` is set (at
/// least `min` of them); returns how many it did.
fn round_trips_until(addr: SocketAddr, seed: u64, max_len: u64, min: u64, done: &AtomicBool) -> u64 {
    let c = connect(addr);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + BOUND;
    let mut n = 0;
    while n < min || !done.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "round trips (seed {seed}) still running after {BOUND:?}");
        let len = rng.range(1, max_len) as usize;
        let data = rng.bytes(len);
        try_echo_on(&c, &data).unwrap_or_else(|e| panic!("round trip {n} (seed {seed}, {len} bytes): {e}"));
        n += 1;
    }
    n
}

/// Writes without reading until a write would block (the server stopped reading because its echo
/// back to us is stuck) or `cap` bytes are out. Returns the bytes written.
fn write_until_would_block(s: &TcpStream, seed: u64, cap: u64) -> u64 {
    s.set_nonblocking(true).unwrap();
    let mut w = s;
    let mut buf = vec![0u8; 64 * KIB as usize];
    let mut written = 0u64;
    while written < cap {
        pattern_fill(seed, written, &mut buf);
        match w.write(&buf) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    written
}

// ---------------------------------------------------------------------------
// Resets
// ---------------------------------------------------------------------------

#[test]
fn echo_clients_resetting_mid_send_do_not_disturb_concurrent_round_trips() {
    const GOOD: u64 = 6;
    const RESETTERS: u64 = 6;
    const RESETS_EACH: u64 = 12;
    let mut server = Server::start(&[]);
    let addr = server.addr();
    let done = AtomicBool::new(false);

    let rounds: u64 = thread::scope(|s| {
        let good: Vec<_> = (0..GOOD)
            .map(|g| {
                let done = &done;
                s.spawn(move || round_trips_until(addr, 0xF00D + g, 128 * KIB, 3, done))
            })
            .collect();
        let resetters: Vec<_> = (0..RESETTERS)
            .map(|r| {
                s.spawn(move || {
                    for i in 0..RESETS_EACH {
                        let seed = r * 1000 + i;
                        let mut c = connect(addr);
                        match i % 3 {
                            // The server is mid-stream: it has echoed (we read a byte of it) and
                            // its send back to us is stuck on full buffers when the RST comes.
                            0 => {
                                let mut first = vec![0u8; 64 * KIB as usize];
                                pattern_fill(seed, 0, &mut first);
                                c.write_all(&first).unwrap();
                                let mut b = [0u8; 1];
                                c.read_exact(&mut b).expect("first echoed byte");
                                write_until_would_block(&c, seed, 32 * MIB);
                            }
                            // Hundreds of small writes the server has probably not all read yet.
                            1 => {
                                for k in 0..300u32 {
                                    c.write_all(format!("line {k} of a client about to reset\n").as_bytes()).unwrap();
                                }
                            }
                            // A reset before the server has any data at all.
                            _ => {}
                        }
                        reset_on_close(&c);
                        drop(c);
                    }
                })
            })
            .collect();
        for h in resetters {
            h.join().expect("resetter thread");
        }
        done.store(true, Ordering::SeqCst);
        good.into_iter().map(|h| h.join().expect("good client thread")).sum()
    });
    eprintln!("{rounds} byte-exact round trips ran next to {} resets", RESETTERS * RESETS_EACH);
    server.assert_alive();
    // A fresh client after the storm.
    echo_roundtrip(addr, &Rng::new(0xAF7E2).bytes(512 * KIB as usize));

    let st = stop(&mut server);
    assert_eq!(stat(&st, "open"), 0, "connections left open after the resets: {st:?}");
    assert_eq!(stat(&st, "total"), GOOD + RESETTERS * RESETS_EACH + 1, "{st:?}");
    assert_eq!(stat(&st, "errors"), 0, "resets by peers must not count as server errors: {st:?}");
    server.assert_no_warnings("clients resetting");
}

#[test]
fn chat_clients_resetting_with_lines_queued_both_ways_do_not_disturb_the_channel() {
    const RESETTERS: usize = 8;
    const THEIR_LINES: usize = 3000;
    const ALICE_LINES: usize = 300;
    let mut server = chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    alice.join("#room");
    bob.join("#room");

    // Small receive buffers: what alice sends them piles up in the server, not in their kernels.
    let resetters: Vec<Client> = (0..RESETTERS)
        .map(|i| {
            let nick = format!("r{i}");
            let mut c = Client::from_stream(connect_with_buffers(addr, Some(4096), None), &nick);
            c.register(&nick);
            c.join("#room");
            c
        })
        .collect();
    bob.sync();
    alice.sync();
    bob.log_received = false;

    let filler = "q".repeat(200);
    let alice_batch = |from: usize, to: usize| -> Vec<u8> {
        (from..to).flat_map(|i| format!("PRIVMSG #room :a{i:05} {filler}\r\n").into_bytes()).collect()
    };
    // Lines owed to the resetters pile up (they never read again)...
    alice.send_raw(&alice_batch(0, ALICE_LINES / 2));
    alice.sync();
    // ...and each resets with its own lines still arriving, while alice keeps talking.
    thread::scope(|s| {
        for mut c in resetters {
            s.spawn(move || {
                let nick = c.name().to_owned();
                let lines: Vec<u8> =
                    (0..THEIR_LINES).flat_map(|k| format!("PRIVMSG #room :{nick}-{k:05}\r\n").into_bytes()).collect();
                // The server may reset us first if it is quick; a failed write is fine here.
                let _ = c.try_send_raw(&lines);
                reset_on_close(c.stream());
                drop(c);
            });
        }
        alice.send_raw(&alice_batch(ALICE_LINES / 2, ALICE_LINES));
    });

    // bob sees all of alice's lines in order, a gap-free prefix of each resetter's lines, and then
    // exactly one QUIT for each resetter.
    let mut next_alice = 0;
    let mut next_theirs = [0usize; RESETTERS];
    let mut quit = [false; RESETTERS];
    let deadline = Instant::now() + WAIT;
    while next_alice < ALICE_LINES || quit.iter().any(|q| !q) {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = bob.next(left);
        let who = m.nick().to_owned();
        if m.is("PRIVMSG") && who == "alice" {
            let want = format!("a{next_alice:05} {filler}");
            assert_eq!(m.last(), want, "alice's line {next_alice} arrived wrong or out of order");
            next_alice += 1;
        } else if let Some(i) = who.strip_prefix('r').and_then(|n| n.parse::<usize>().ok()) {
            assert!(!quit[i], "a line from {who} after its QUIT: {m:?}");
            if m.is("QUIT") {
                quit[i] = true;
            } else {
                assert!(m.is("PRIVMSG"), "unexpected line from {who}: {m:?}");
                assert_eq!(m.last(), format!("{who}-{:05}", next_theirs[i]), "{who}'s lines out of order");
                next_theirs[i] += 1;
            }
        } else {
            bob.fail(&format!("unexpected line {m:?}"));
        }
    }
    eprintln!("bob saw these many lines of each resetter before its QUIT: {next_theirs:?}");
    assert!(bob.sync().is_empty(), "more lines after every QUIT");
    alice.send("PRIVMSG #room :still here");
    let m = bob.expect(|m| m.is("PRIVMSG"), WAIT);
    assert_eq!((m.nick(), m.last()), ("alice", "still here"));
    bob.send("NAMES #room");
    let names = bob.expect(|m| m.is("353"), WAIT);
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@alice", "bob"], "resetters left behind in the channel");
    assert_eq!(chat_clients_known(&mut bob), 2, "state left behind by clients that reset");

    server.assert_alive();
    let st = stop(&mut server);
    assert_eq!(stat(&st, "errors"), 0, "resets by peers must not count as server errors: {st:?}");
    server.assert_no_warnings("chat clients resetting");
}

// ---------------------------------------------------------------------------
// Half-open connections
// ---------------------------------------------------------------------------

#[test]
fn echo_half_close_with_megabytes_owed_delivers_every_byte_then_eof() {
    const CLIENTS: u64 = 8;
    let server = embedded::Server::start(&[]);
    let addr = server.addr();
    let done = AtomicBool::new(false);

    let written: Vec<u64> = thread::scope(|s| {
        let other = s.spawn(|| round_trips_until(addr, 0xB15, 64 * KIB, 3, &done));
        let half: Vec<_> = (0..CLIENTS)
            .map(|i| {
                s.spawn(move || {
                    let seed = 0x4A1F_0000 + i;
                    let mut c = connect(addr);
                    // Without reading, until the server's echo to us is stuck and it stops reading.
                    let mut written = 0u64;
                    write_until_stalled(&c, seed, &mut written, 256 * MIB);
                    assert!(written > 0 && written < 256 * MIB, "client {i}: wrote {written} bytes");
                    // Owed: every one of those bytes. Say we are done, then collect them.
                    c.shutdown(Shutdown::Write).unwrap();
                    read_pattern_to_eof(&mut c, seed, written)
                        .unwrap_or_else(|e| panic!("client {i} half-closed owed {written} bytes: {e}"));
                    written
                })
            })
            .collect();
        let written = half.into_iter().map(|h| h.join().expect("half-closing client")).collect();
        done.store(true, Ordering::SeqCst);
        other.join().expect("round-trip client");
        written
    });
    let total: u64 = written.iter().sum();
    eprintln!("half-closed clients were owed {written:?} bytes ({} MiB in all)", total / MIB);
    let st = server.stop();
    assert_eq!(st.totals.bytes_in, st.totals.bytes_out, "{st:?}");
    assert_eq!(st.totals.open, 0, "{st:?}");
}

#[test]
fn chat_client_shutting_down_its_write_side_is_a_quit_seen_by_the_channel() {
    const LEAVERS: usize = 5;
    let server = embedded::chat_server(&[]);
    let addr = server.addr();
    let mut bob = Client::registered(addr, "bob");
    bob.join("#room");
    let mut leavers: Vec<Client> = (0..LEAVERS)
        .map(|i| {
            let nick = format!("h{i}");
            let mut c = Client::registered(addr, &nick);
            c.join("#room");
            c
        })
        .collect();
    bob.sync();

    for (i, c) in leavers.iter_mut().enumerate() {
        c.send(&format!("PRIVMSG #room :last words {i}"));
        c.stream().shutdown(Shutdown::Write).unwrap();
    }
    // The server closes each of them (clean EOF, whatever it sent first).
    for c in &mut leavers {
        c.expect_closed(WAIT);
    }
    // bob sees each leaver's last line, then its QUIT, and nothing else.
    let mut spoke = [false; LEAVERS];
    let mut quit = [false; LEAVERS];
    while quit.iter().any(|q| !q) {
        let m = bob.next(WAIT);
        let i: usize =
            m.nick().strip_prefix('h').and_then(|n| n.parse().ok()).unwrap_or_else(|| bob.fail("stray line"));
        if m.is("PRIVMSG") {
            assert_eq!(m.last(), format!("last words {i}"));
            assert!(!spoke[i] && !quit[i], "{m:?} out of order");
            spoke[i] = true;
        } else {
            assert!(m.is("QUIT") && spoke[i] && !quit[i], "{m:?}: expected one QUIT after the last words");
            quit[i] = true;
        }
    }
    assert!(bob.sync().is_empty());
    // Their nicks are free and the channel holds only bob.
    let mut again = Client::registered(addr, "h0");
    again.join("#room");
    let got = bob.sync();
    assert!(got.len() == 1 && got[0].is("JOIN") && got[0].nick() == "h0", "{}", show(&got));
    bob.send("NAMES #room");
    let names = bob.expect(|m| m.is("353"), WAIT);
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@bob", "h0"]);
    assert_eq!(chat_clients_known(&mut bob), 2, "state left behind by clients that half-closed");
}

// ---------------------------------------------------------------------------
// Silent connections
// ---------------------------------------------------------------------------

const SILENT: usize = 500;

fn open_silent(addr: SocketAddr) -> Vec<TcpStream> {
    raise_nofile(4 * SILENT as u64 + 1024);
    (0..SILENT).map(|_| connect(addr)).collect()
}

#[test]
fn five_hundred_silent_echo_connections_do_not_disturb_working_clients() {
    const WORKERS: u64 = 4;
    raise_nofile(4 * SILENT as u64 + 1024);
    let mut server = Server::start(&[]);
    let addr = server.addr();
    echo_roundtrip(addr, b"warm-up");
    let before = server.rss_kib();
    let silent = open_silent(addr);
    let done = AtomicBool::new(true);
    let rounds: u64 = thread::scope(|s| {
        let hs: Vec<_> = (0..WORKERS)
            .map(|w| {
                let done = &done;
                s.spawn(move || round_trips_until(addr, 0x5113 + w, 256 * KIB, 25, done))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker client")).sum()
    });
    assert_eq!(rounds, 25 * WORKERS);
    // None of the silent ones was dropped or forgotten: each echoes when it finally speaks.
    for (i, c) in silent.iter().enumerate() {
        try_echo_on(c, format!("silent {i} speaks").as_bytes()).unwrap_or_else(|e| panic!("silent client {i}: {e}"));
    }
    let after = server.rss_kib();
    eprintln!("rss before={before} KiB with {SILENT} silent connections={after} KiB");
    assert!(after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB, "RSS {before} -> {after} KiB");
    drop(silent);
    let st = stop(&mut server);
    assert_eq!(stat(&st, "total"), 1 + SILENT as u64 + WORKERS, "{st:?}");
    assert_eq!(stat(&st, "open"), 0, "{st:?}");
}

#[test]
fn five_hundred_silent_chat_connections_do_not_disturb_a_conversation() {
    raise_nofile(4 * SILENT as u64 + 1024);
    let server = embedded::chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    alice.join("#room");
    bob.join("#room");
    let silent = open_silent(addr);

    for i in 0..200 {
        alice.send(&format!("PRIVMSG #room :hello {i}"));
    }
    for i in 0..200 {
        let m = bob.expect(|m| m.is("PRIVMSG"), WAIT);
        assert_eq!((m.nick(), m.last()), ("alice", format!("hello {i}").as_str()));
    }
    assert!(bob.sync().is_empty());
    // Every silent connection is still there and served (PING works before registration).
    let mut silent: Vec<Client> =
        silent.into_iter().enumerate().map(|(i, s)| Client::from_stream(s, &format!("silent{i}"))).collect();
    for c in &mut silent {
        c.send("PING :are-you-there");
    }
    for c in &mut silent {
        let m = c.expect(|m| m.is("PONG"), WAIT);
        assert_eq!(m.last(), "are-you-there");
    }
    // They never registered, so the channel never heard of them.
    bob.send("NAMES #room");
    let names = bob.expect(|m| m.is("353"), WAIT);
    assert_eq!(names.last().split(' ').count(), 2, "{names:?}");
}

// ---------------------------------------------------------------------------
// Clients that never read
// ---------------------------------------------------------------------------

#[test]
fn twenty_echo_clients_that_never_read_are_backpressured_while_others_round_trip() {
    const HOGS: u64 = 20;
    const CAP: u64 = 64 * MIB;
    let mut server = Server::start(&[]);
    let addr = server.addr();
    echo_roundtrip(addr, &Rng::new(1).bytes(64 * KIB as usize));
    let before = server.rss_kib();
    let done = AtomicBool::new(false);

    // Fixed client buffers keep the data parked in kernels (not in the server) small and the test fast.
    let hogs: Vec<TcpStream> =
        (0..HOGS).map(|_| connect_with_buffers(addr, Some(64 * KIB as usize), Some(64 * KIB as usize))).collect();
    let (written, rounds) = thread::scope(|s| {
        let good: Vec<_> = (0..3)
            .map(|g| {
                let done = &done;
                s.spawn(move || round_trips_until(addr, 0x600D + g, 64 * KIB, 5, done))
            })
            .collect();
        let pushers: Vec<_> = hogs
            .iter()
            .enumerate()
            .map(|(i, h)| {
                s.spawn(move || {
                    let mut written = 0u64;
                    write_until_stalled(h, 0x406 + i as u64, &mut written, CAP);
                    written
                })
            })
            .collect();
        let written: Vec<u64> = pushers.into_iter().map(|h| h.join().expect("pusher")).collect();
        done.store(true, Ordering::SeqCst);
        let rounds: u64 = good.into_iter().map(|h| h.join().expect("good client")).sum();
        (written, rounds)
    });
    let stalled = server.rss_kib();
    eprintln!("{rounds} round trips; non-readers wrote {written:?}; rss before={before} KiB stalled={stalled} KiB");
    for (i, w) in written.iter().enumerate() {
        assert!(*w > 0 && *w < CAP, "non-reader {i} wrote {w} of {CAP} bytes: no backpressure");
    }
    assert!(
        stalled.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "server RSS grew from {before} to {stalled} KiB while {HOGS} clients never read"
    );
    // A new client is served while all of them are still stuck.
    echo_roundtrip(addr, &Rng::new(2).bytes(MIB as usize));
    // What the server held back was kept intact: each non-reader gets it all once it reads.
    thread::scope(|s| {
        for (i, (h, w)) in hogs.iter().zip(&written).enumerate() {
            s.spawn(move || {
                h.shutdown(Shutdown::Write).unwrap();
                let mut r = h.try_clone().unwrap();
                read_pattern_to_eof(&mut r, 0x406 + i as u64, *w)
                    .unwrap_or_else(|e| panic!("non-reader {i} reading at last: {e}"));
            });
        }
    });
    let st = stop(&mut server);
    assert_eq!(stat(&st, "bytes_in"), stat(&st, "bytes_out"), "{st:?}");
}

/// Readers' progress (messages received in order), for the flooding sender to keep within a window.
struct Progress {
    seen: Mutex<Vec<u64>>,
    cv: Condvar,
}

impl Progress {
    fn wait_min_at_least(&self, n: u64) {
        let deadline = Instant::now() + WAIT;
        let mut seen = self.seen.lock().unwrap();
        while seen.iter().copied().min().unwrap_or(0) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "readers stuck at {seen:?}, the sender waits for {n}");
            seen = self.cv.wait_timeout(seen, left).unwrap().0;
        }
    }

    fn set(&self, i: usize, n: u64) {
        self.seen.lock().unwrap()[i] = n;
        self.cv.notify_all();
    }
}

#[test]
fn chat_members_that_never_read_are_dropped_while_readers_get_every_line_in_order() {
    const READERS: usize = 3;
    const NON_READERS: usize = 6;
    const SENDQ: u64 = 64 * KIB;
    const BATCH: u64 = 10;
    // How far the sender may run ahead of the slowest reader. The server counts a line against a
    // reader's SendQ until its send completes, so the whole window must fit in the SendQ with room
    // to spare: then only the non-readers can ever overflow theirs.
    const WINDOW: u64 = 30;
    // The non-readers' drops take a few MiB (the kernel buffers some for them first); keep sending
    // this long after the last one, and never more than MAX in all.
    const AFTER_LAST_DROP: u64 = 300;
    const MAX: u64 = 100_000;
    let mut server = chat_server(&["--sendq-bytes", &SENDQ.to_string(), "--metrics-listen", "127.0.0.1:0"]);
    let addr = server.addr();
    let metrics = metrics_addr(&mut server);
    let mut sender = Client::registered(addr, "sender");
    sender.join("#flood");
    let mut readers: Vec<Client> = (0..READERS)
        .map(|i| {
            let nick = format!("reader{i}");
            let mut c = Client::from_stream(connect_with_buffers(addr, Some(MIB as usize), None), &nick);
            c.register(&nick);
            c.join("#flood");
            c
        })
        .collect();
    let mut non_readers: Vec<Client> = (0..NON_READERS)
        .map(|i| {
            let nick = format!("deaf{i}");
            let mut c = Client::from_stream(connect_with_buffers(addr, Some(4096), None), &nick);
            c.register(&nick);
            c.join("#flood");
            c
        })
        .collect();
    // Everyone has read the JOINs; from here on the deaf ones never read.
    for c in readers.iter_mut().chain(non_readers.iter_mut()).chain([&mut sender]) {
        c.sync();
        c.log_received = false;
    }
    let before = server.rss_kib();
    let filler = "z".repeat(400);
    let progress = Progress { seen: Mutex::new(vec![0; READERS]), cv: Condvar::new() };
    // Counted by the server; its log says it once per 10 s at most.
    let drops = || limit_hits(metrics, "sendq") as usize;
    let mut peak = before;

    let total = thread::scope(|s| {
        for (i, r) in readers.iter_mut().enumerate() {
            let (progress, filler) = (&progress, &filler);
            s.spawn(move || {
                let mut next = 0u64;
                let mut quits = vec![false; NON_READERS];
                loop {
                    let m = r.next(WAIT);
                    if m.is("PRIVMSG") && m.nick() == "sender" && m.last().starts_with("end ") {
                        assert_eq!(m.last(), format!("end {next}"), "{}: messages lost", r.name());
                        break;
                    } else if m.is("PRIVMSG") && m.nick() == "sender" {
                        if m.last() != format!("{next:06} {filler}") {
                            r.fail(&format!("expected message {next}, got {m:?}"));
                        }
                        next += 1;
                        if next.is_multiple_of(BATCH) {
                            progress.set(i, next);
                        }
                    } else if m.is("QUIT") && m.nick().starts_with("deaf") {
                        let k: usize = m.nick()[4..].parse().unwrap();
                        assert!(!quits[k], "two QUITs for {}", m.nick());
                        assert!(m.last().contains("SendQ exceeded"), "{m:?}");
                        quits[k] = true;
                    } else {
                        r.fail(&format!("unexpected line {m:?}"));
                    }
                }
                assert!(quits.iter().all(|&q| q), "{}: QUITs seen {quits:?}", r.name());
            });
        }
        let mut sent = 0u64;
        let mut stop_at = MAX;
        while sent < stop_at {
            progress.wait_min_at_least((sent + BATCH).saturating_sub(WINDOW));
            let batch: Vec<u8> = (sent..sent + BATCH)
                .flat_map(|k| format!("PRIVMSG #flood :{k:06} {filler}\r\n").into_bytes())
                .collect();
            sender.send_raw(&batch);
            sent += BATCH;
            if sent.is_multiple_of(500) {
                peak = peak.max(server.rss_kib());
            }
            if stop_at == MAX && drops() == NON_READERS {
                stop_at = sent + AFTER_LAST_DROP;
            }
        }
        assert!(stop_at < MAX, "after {MAX} messages only {} non-readers were dropped", drops());
        sender.send(&format!("PRIVMSG #flood :end {sent}"));
        sent
    });
    let peak = peak.max(server.rss_kib());
    eprintln!("{total} messages; rss before={before} KiB peak={peak} KiB");
    assert!(peak.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB, "server RSS grew from {before} to {peak} KiB");
    // Each deaf client got a gap-free, in-order prefix of the flood, then a clean close.
    for c in &mut non_readers {
        let got = c.expect_closed(WAIT);
        let mut next = 0u64;
        for m in &got {
            if m.is("PRIVMSG") {
                assert_eq!(m.last(), format!("{next:06} {filler}"), "{}: message {next}", c.name());
                next += 1;
            } else {
                assert!(m.is("QUIT") && m.nick().starts_with("deaf"), "{}: unexpected {m:?}", c.name());
            }
        }
        assert!(next < total, "{} got every message: it was never dropped", c.name());
    }
    assert_eq!(drops(), NON_READERS, "SendQ drops counted");
    assert!(server.log().contains("SendQ exceeded (--sendq-bytes)"), "no SendQ log line:\n{}", server.log());
    let got = sender.sync();
    assert!(got.iter().all(|m| m.is("QUIT")), "the sender was disturbed:\n{}", show(&got));
    assert_eq!(chat_clients_known(&mut sender), 1 + READERS, "state left behind by dropped clients");
    let st = stop(&mut server);
    assert_eq!(stat(&st, "errors"), 0, "{st:?}");
}

#[test]
fn chat_client_that_half_closes_still_gets_every_reply_it_is_owed() {
    // A scripted session (`printf ... | nc`): every command written at once, then the write side
    // shut, no QUIT. The replies (~9 MB: more than the kernel buffers hold) are read only once the
    // server has handled the EOF, so most are still queued in the server then: all must arrive,
    // then the close.
    const NAMES: usize = 50_000;
    let server = embedded::chat_server(&["--flood-rate", "0", "--sendq-bytes", "67108864"]);
    let (nick, chan) = ("scripted_client", "#a-channel-with-quite-a-long-name-for-bulk");
    let mut watcher = Client::registered(server.addr(), "watcher");
    watcher.join(chan);
    let mut s = connect_with_buffers(server.addr(), Some(4096), None);
    let mut script = format!("NICK {nick}\r\nUSER s 0 * :s\r\nJOIN {chan}\r\n");
    for _ in 0..NAMES {
        script.push_str(&format!("NAMES {chan}\r\n"));
    }
    s.write_all(script.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // The server has read the EOF when the channel sees the client leave.
    watcher.expect(|m| m.is("QUIT") && m.nick() == nick, WAIT);
    let got = String::from_utf8(read_to_eof(&mut s).expect("replies, then EOF")).expect("UTF-8 replies");
    let code = |c: &str| got.lines().filter(|l| l.split(' ').nth(1) == Some(c)).count();
    assert_eq!(code("001"), 1, "no welcome: {}", &got[..got.len().min(800)]);
    assert_eq!(code("JOIN"), 1, "no JOIN");
    // One NAMES reply from the JOIN, then one per command.
    assert_eq!(code("366"), NAMES + 1, "NAMES replies lost at the half-close ({} bytes in all)", got.len());
    assert!(!got.contains("ERROR"), "{}", &got[got.len().saturating_sub(500)..]);
}

// ---------------------------------------------------------------------------
// File descriptor exhaustion
// ---------------------------------------------------------------------------

const NOFILE: u64 = 64;
/// Far more connections than fit in NOFILE descriptors.
const EXTRA: usize = 100;

/// Drives `cycles` rounds of: exhaust the server's descriptors with EXTRA connections, check with
/// `served` that the clients admitted before and the first extra (accepted first: the backlog is
/// FIFO) are still served, close the extras, check that a new client is accepted (`fresh`) and that
/// every descriptor came back.
fn exhaustion_cycles(
    server: &mut Server,
    cycles: usize,
    served: &mut dyn FnMut(usize, &TcpStream),
    fresh: &mut dyn FnMut(usize),
) {
    let addr = server.addr();
    let baseline = server.fd_count();
    for cycle in 0..cycles {
        let extras: Vec<TcpStream> = (0..EXTRA).map(|_| connect(addr)).collect();
        // The kernel completes the handshakes; the server accepts until its table is full.
        assert!(
            poll_until(BOUND, || server.fd_count() as u64 >= NOFILE),
            "cycle {cycle}: the server's descriptors never ran out ({} of {NOFILE})",
            server.fd_count()
        );
        if cycle == 0 {
            // Rate-limited to one per 10 s, so only the first cycle is sure to log it.
            server.expect_line("out of file descriptors", BOUND);
        }
        server.assert_alive();
        served(cycle, &extras[0]);
        drop(extras);
        fresh(cycle);
        assert!(
            poll_until(BOUND, || server.fd_count() <= baseline),
            "cycle {cycle}: the server holds {} descriptors, {baseline} before the cycle",
            server.fd_count()
        );
    }
}

#[test]
fn echo_survives_repeated_descriptor_exhaustion_and_recovers_each_time() {
    const CYCLES: usize = 3;
    let mut server = Server::builder().nofile(NOFILE).spawn();
    let addr = server.addr();
    let residents: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    for (i, r) in residents.iter().enumerate() {
        echo_on(r, format!("resident {i} admitted").as_bytes());
    }
    let mut rng = Rng::new(0xFD);
    exhaustion_cycles(
        &mut server,
        CYCLES,
        &mut |cycle, first_extra| {
            for (i, r) in residents.iter().enumerate() {
                try_echo_on(r, &rng.bytes(256 * KIB as usize))
                    .unwrap_or_else(|e| panic!("cycle {cycle}: resident {i} not served while out of descriptors: {e}"));
            }
            echo_on(first_extra, format!("first extra of cycle {cycle}").as_bytes());
        },
        &mut |cycle| {
            let data = Rng::new(cycle as u64).bytes(64 * KIB as usize);
            let got = try_echo_roundtrip(addr, &data)
                .unwrap_or_else(|e| panic!("cycle {cycle}: no new connection served after recovery: {e}"));
            assert_bytes_eq(&got, &data, "echo after recovery");
        },
    );
    for (i, r) in residents.iter().enumerate() {
        echo_on(r, format!("resident {i} at the end").as_bytes());
    }
    drop(residents);
    let st = stop(&mut server);
    // Every connection was accepted in the end, the extras included, and none was leaked.
    assert_eq!(stat(&st, "total"), (4 + CYCLES * (EXTRA + 1)) as u64, "{st:?}");
    assert_eq!(stat(&st, "open"), 0, "{st:?}");
    assert_eq!(stat(&st, "errors"), 0, "{st:?}");
}

#[test]
fn chat_survives_repeated_descriptor_exhaustion_and_recovers_each_time() {
    let mut server = Server::builder().nofile(NOFILE).args(["--mode", "chat", "--flood-rate", "0"]).spawn();
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    alice.join("#room");
    bob.join("#room");
    bob.sync();
    let (alice, bob) = (Mutex::new(alice), Mutex::new(bob));
    exhaustion_cycles(
        &mut server,
        2,
        &mut |cycle, first_extra| {
            let mut extra = Client::from_stream(first_extra.try_clone().unwrap(), "first-extra");
            extra.send(&format!("PING :cycle-{cycle}"));
            extra.expect(|m| m.is("PONG") && m.last() == format!("cycle-{cycle}"), WAIT);
            let (mut alice, mut bob) = (alice.lock().unwrap(), bob.lock().unwrap());
            for k in 0..20 {
                alice.send(&format!("PRIVMSG #room :cycle {cycle} line {k}"));
            }
            for k in 0..20 {
                let m = bob.expect(|m| m.is("PRIVMSG"), WAIT);
                assert_eq!(m.last(), format!("cycle {cycle} line {k}"));
            }
        },
        &mut |cycle| {
            let nick = format!("late{cycle}");
            let mut late = Client::registered(addr, &nick);
            late.join("#room");
            late.send("PRIVMSG #room :made it");
            let mut bob = bob.lock().unwrap();
            let m = bob.expect(|m| m.is("JOIN"), WAIT);
            assert_eq!(m.nick(), nick);
            let m = bob.expect(|m| m.is("PRIVMSG"), WAIT);
            assert_eq!((m.nick(), m.last()), (nick.as_str(), "made it"));
            late.send("QUIT :bye");
            late.expect_closed(WAIT);
            bob.expect(|m| m.is("QUIT") && m.nick() == nick, WAIT);
        },
    );
    let mut bob = bob.into_inner().unwrap();
    let got = bob.sync();
    assert!(got.is_empty(), "{}", show(&got));
    assert_eq!(chat_clients_known(&mut bob), 2, "state left behind by the extra connections");
    let st = stop(&mut server);
    assert_eq!(stat(&st, "errors"), 0, "{st:?}");
}

/// GET /metrics over HTTP/1.0: the whole reply, or why there was none.
fn try_scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, BOUND)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    Ok(String::from_utf8_lossy(&read_to_eof(&mut s)?).into_owned())
}

fn http_ok(reply: &str) -> bool {
    reply.lines().next().is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200 "))
}

#[test]
fn metrics_endpoint_comes_back_after_descriptor_exhaustion() {
    let mut server = Server::builder().nofile(NOFILE).args(["--metrics-listen", "127.0.0.1:0"]).spawn();
    let addr = server.addr();
    let line = server.expect_line("metrics on http://", BOUND);
    let metrics: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
    let reply = try_scrape(metrics).expect("scrape before exhaustion");
    assert!(http_ok(&reply) && reply.contains("echoport_connections_open"), "{reply}");

    let extras: Vec<TcpStream> = (0..EXTRA).map(|_| connect(addr)).collect();
    server.expect_line("out of file descriptors", BOUND);
    // Linux's accept(2) takes its descriptor number before it blocks, so while the metrics thread
    // waits in accept one slot is held but not listed in /proc/PID/fd: the table is full at
    // NOFILE - 1 visible descriptors.
    assert!(
        poll_until(BOUND, || server.fd_count() as u64 >= NOFILE - 1),
        "descriptors never ran out ({} of {NOFILE} open)\n{}",
        server.fd_count(),
        server.log()
    );
    // A scrape while out of descriptors is answered when the metrics thread was already waiting in
    // accept (its held slot); otherwise it waits in the backlog. Give the server a moment to try
    // (a short window only makes the test weaker, never wrongly red), then end the exhaustion.
    let mut probe = connect(metrics);
    probe.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let during = probe.read(&mut buf);
    eprintln!("scrape during exhaustion: {during:?}");
    drop(extras);
    echo_roundtrip(addr, b"the echo port is back");

    // Scrapes are served again once descriptors are free (the acceptors may still be backing off:
    // a bounded number of spaced retries).
    let deadline = Instant::now() + BOUND;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_scrape(metrics) {
            Ok(reply) if http_ok(&reply) => break,
            other => {
                assert!(
                    attempts < 20 && Instant::now() < deadline,
                    "/metrics not served after the exhaustion ended ({attempts} attempts, last: {other:?})\n{}",
                    server.log()
                );
                thread::sleep(Duration::from_millis(250));
            }
        }
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
    server.assert_alive();
}

#[test]
fn sigterm_while_out_of_descriptors_delivers_what_is_owed_and_exits_0() {
    const RESIDENTS: u64 = 4;
    let mut server = Server::builder().nofile(NOFILE).spawn();
    let addr = server.addr();
    // Residents the server owes echo bytes to: it has stopped reading them, their data is parked.
    let mut residents: Vec<(TcpStream, u64)> = (0..RESIDENTS)
        .map(|i| {
            let c = connect_with_buffers(addr, Some(64 * KIB as usize), Some(64 * KIB as usize));
            echo_on(&c, b"admitted");
            let written = write_until_would_block(&c, 0xE0F + i, 16 * MIB);
            c.shutdown(Shutdown::Write).unwrap();
            (c, written)
        })
        .collect();
    let extras: Vec<TcpStream> = (0..EXTRA).map(|_| connect(addr)).collect();
    assert!(
        poll_until(BOUND, || server.fd_count() as u64 >= NOFILE),
        "the server's descriptors never ran out ({} of {NOFILE})",
        server.fd_count()
    );
    server.signal(Signal::SIGTERM);
    server.expect_line("shutdown requested", BOUND);
    for (i, (c, written)) in residents.iter_mut().enumerate() {
        read_pattern_to_eof(c, 0xE0F + i as u64, *written)
            .unwrap_or_else(|e| panic!("resident {i} was owed {written} bytes at SIGTERM: {e}"));
    }
    // The accepted extras are closed as idle; those still in the backlog are refused with it.
    for (i, mut e) in extras.into_iter().enumerate() {
        let mut buf = [0u8; 1];
        let r = e.read(&mut buf);
        assert!(is_closed(&r), "extra {i} not closed by the shutdown: {r:?}");
    }
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let st = server.final_stats();
    assert_eq!(stat(&st, "open"), 0, "{st:?}");
    assert!(server.wait_for_line(|l| l.contains("shutdown timeout"), Duration::ZERO).is_none(), "{}", server.log());
}

// ---------------------------------------------------------------------------
// SIGTERM under load
// ---------------------------------------------------------------------------

/// Reads the pattern stream `seed` until EOF, checking every byte; reports once `notify_at` bytes
/// have come back. Returns how many bytes came back.
fn read_pattern_stream(s: &TcpStream, seed: u64, notify_at: u64, notify: mpsc::Sender<()>) -> Result<u64, String> {
    let mut r = s;
    let mut buf = vec![0u8; 64 * KIB as usize];
    let mut want = vec![0u8; buf.len()];
    let mut pos = 0u64;
    let mut notify = Some(notify);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(pos),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read failed after {pos} bytes: {}", explain_timeout(e, "read"))),
        };
        pattern_fill(seed, pos, &mut want[..n]);
        if let Some(d) = first_diff(&buf[..n], &want[..n]) {
            return Err(format!("byte mismatch at offset {}", pos + d as u64));
        }
        pos += n as u64;
        if pos >= notify_at {
            if let Some(tx) = notify.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// Streams the pattern stream `seed` until `stop` is set, then `tail` more bytes, then half-closes.
/// Returns how many bytes were written.
fn write_pattern_stream(s: &TcpStream, seed: u64, stop: &AtomicBool, tail: u64) -> u64 {
    let mut w = s;
    let mut buf = vec![0u8; 16 * KIB as usize];
    let mut written = 0u64;
    let mut end: Option<u64> = None;
    let deadline = Instant::now() + BOUND;
    loop {
        if end.is_none() && stop.load(Ordering::SeqCst) {
            end = Some(written + tail);
        }
        let n = match end {
            Some(e) if written >= e => break,
            Some(e) => ((e - written) as usize).min(buf.len()),
            None => buf.len(),
        };
        assert!(Instant::now() < deadline, "writer {seed:#x} still streaming after {BOUND:?}");
        pattern_fill(seed, written, &mut buf[..n]);
        w.write_all(&buf[..n]).unwrap_or_else(|e| panic!("writer {seed:#x} after {written} bytes: {e}"));
        written += n as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
    written
}

/// A writer and a reader of its own pattern on each connection (seeded `seed_base + i`). Each
/// reader sends on `tx` once `warm` bytes came back; writers stop `tail` bytes after `stop` is set.
/// Join each pair for (bytes written, bytes read back or what went wrong).
#[allow(clippy::type_complexity)]
fn spawn_streams<'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    conns: &'scope [TcpStream],
    seed_base: u64,
    warm: u64,
    tail: u64,
    stop: &'scope AtomicBool,
    tx: &mpsc::Sender<()>,
) -> Vec<(thread::ScopedJoinHandle<'scope, u64>, thread::ScopedJoinHandle<'scope, Result<u64, String>>)> {
    conns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let seed = seed_base + i as u64;
            let tx = tx.clone();
            let reader = s.spawn(move || read_pattern_stream(c, seed, warm, tx));
            let writer = s.spawn(move || write_pattern_stream(c, seed, stop, tail));
            (writer, reader)
        })
        .collect()
}

#[test]
fn sigterm_under_full_load_echoes_every_byte_to_every_streaming_client() {
    const CLIENTS: u64 = 50;
    const WARM: u64 = 128 * KIB;
    const TAIL: u64 = 128 * KIB;
    let mut server = Server::start(&["--shutdown-timeout", "20s"]);
    let addr = server.addr();
    let stop_flag = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let conns: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();

    let results: Vec<(u64, Result<u64, String>)> = thread::scope(|s| {
        let pairs = spawn_streams(s, &conns, 0x5167_0000, WARM, TAIL, &stop_flag, &tx);
        drop(tx);
        // Every client is streaming and has had echo back before the signal.
        for k in 0..CLIENTS {
            rx.recv_timeout(BOUND).unwrap_or_else(|_| panic!("only {k} of {CLIENTS} clients got {WARM} bytes back"));
        }
        server.signal(Signal::SIGTERM);
        server.expect_line("shutdown requested", BOUND);
        stop_flag.store(true, Ordering::SeqCst);
        pairs.into_iter().map(|(w, r)| (w.join().expect("writer"), r.join().expect("reader"))).collect()
    });
    let status = server.wait_exit(BOUND);
    let mut total = 0;
    for (i, (written, got)) in results.iter().enumerate() {
        match got {
            Ok(n) if n == written => total += n,
            Ok(n) => panic!("client {i} wrote {written} bytes and got {n} back before EOF"),
            Err(e) => panic!("client {i} wrote {written} bytes: {e}"),
        }
    }
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown complete", BOUND);
    assert!(
        server.wait_for_line(|l| l.contains("shutdown timeout"), Duration::ZERO).is_none(),
        "the drain hit its timeout:\n{}",
        server.log()
    );
    let st = server.final_stats();
    eprintln!("{} MiB echoed across the shutdown: {st:?}", total / MIB);
    assert_eq!(stat(&st, "bytes_in"), total, "{st:?}");
    assert_eq!(stat(&st, "bytes_out"), total, "{st:?}");
    assert_eq!(stat(&st, "open"), 0, "{st:?}");
    server.assert_no_warnings("graceful shutdown under load");
}

#[test]
fn sigterm_with_stuck_clients_still_drains_every_reading_client_then_exits_at_the_timeout() {
    const READERS: u64 = 20;
    const STUCK: u64 = 4;
    const WARM: u64 = 64 * KIB;
    const TAIL: u64 = 64 * KIB;
    let mut server = Server::start(&["--shutdown-timeout", "5s"]);
    let addr = server.addr();
    let stuck: Vec<TcpStream> = (0..STUCK).map(|_| connect(addr)).collect();
    let stop_flag = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let conns: Vec<TcpStream> = (0..READERS).map(|_| connect(addr)).collect();

    let results: Vec<(u64, Result<u64, String>)> = thread::scope(|s| {
        // The stuck ones write until the server stops reading them and never read.
        let stuck_writers: Vec<_> = stuck
            .iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    let mut written = 0;
                    write_until_stalled(c, 0x57C + i as u64, &mut written, 256 * MIB);
                })
            })
            .collect();
        let pairs = spawn_streams(s, &conns, 0x7E2A_0000, WARM, TAIL, &stop_flag, &tx);
        drop(tx);
        for h in stuck_writers {
            h.join().expect("stuck writer");
        }
        for k in 0..READERS {
            rx.recv_timeout(BOUND).unwrap_or_else(|_| panic!("only {k} of {READERS} clients got {WARM} bytes back"));
        }
        server.signal(Signal::SIGTERM);
        server.expect_line("shutdown requested", BOUND);
        stop_flag.store(true, Ordering::SeqCst);
        pairs.into_iter().map(|(w, r)| (w.join().expect("writer"), r.join().expect("reader"))).collect()
    });
    for (i, (written, got)) in results.iter().enumerate() {
        match got {
            Ok(n) if n == written => {}
            Ok(n) => panic!("client {i} wrote {written} bytes and got {n} back before EOF"),
            Err(e) => panic!("client {i} wrote {written} bytes: {e}"),
        }
    }
    // The stuck clients hold the drain until the timeout, which then ends it.
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown timeout", BOUND);
    server.expect_line("shutdown complete", BOUND);
    drop(stuck);
    assert!(server.lines_at_level(&["ERROR"]).is_empty(), "{}", server.log());
}
