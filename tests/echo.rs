//! Echo behaviour of echoport over real loopback sockets.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

// Tests that look at none of the server's memory, descriptor limit, logs or metrics endpoint run
// it embedded in this process (`embedded::Server`): the same sockets, and the stats `run` returns
// instead of the `final stats` line and the exit status.
use common::*;
use nix::sys::signal::Signal;

const MIB: usize = 1024 * 1024;

/// One client of the concurrent test: writes `data` in random chunks on one
/// thread, reads and verifies every byte on this one, half-closes, expects EOF
/// after exactly `data.len()` bytes.
fn chunked_client(addr: SocketAddr, data: Arc<Vec<u8>>, seed: u64) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&addr, BOUND).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut w = s.try_clone().map_err(|e| format!("try_clone: {e}"))?;
    let wdata = Arc::clone(&data);
    let writer = thread::spawn(move || -> Result<(), String> {
        let mut rng = Rng::new(seed ^ 0xC0FFEE);
        let mut off = 0;
        while off < wdata.len() {
            let n = (rng.range(1, 64 * 1024) as usize).min(wdata.len() - off);
            w.write_all(&wdata[off..off + n]).map_err(|e| format!("write at {off}: {e}"))?;
            off += n;
        }
        w.shutdown(Shutdown::Write).map_err(|e| format!("shutdown(Write): {e}"))
    });

    let mut r = s;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0usize;
    let read_res = loop {
        match r.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if pos + n > data.len() {
                    break Err(format!("received {} bytes, more than the {} sent", pos + n, data.len()));
                }
                if let Some(d) = first_diff(&buf[..n], &data[pos..pos + n]) {
                    break Err(format!("byte mismatch at offset {}", pos + d));
                }
                pos += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let e = explain_timeout(e, "read");
                break Err(format!("read after {pos} of {} bytes: {e}", data.len()));
            }
        }
    };
    // If reading failed, unblock a writer that may be stuck on a full buffer.
    if read_res.is_err() {
        let _ = r.shutdown(Shutdown::Both);
    }
    let write_res = writer.join().map_err(|_| "writer panicked".to_string())?;
    read_res?;
    write_res?;
    if pos != data.len() {
        return Err(format!("EOF after {pos} bytes, expected {}", data.len()));
    }
    Ok(())
}

#[test]
fn concurrent_clients_byte_exact_echo() {
    const CLIENTS: usize = 200;
    const MAX: u64 = 4 * MIB as u64;
    let server = embedded::Server::start(&[]);
    let addr = server.addr();

    let mut rng = Rng::new(0xEC40_0001);
    let sizes: Vec<usize> = (0..CLIENTS)
        .map(|i| match i {
            0 => 0,
            1 => MAX as usize,
            _ => {
                // log-uniform-ish: pick a power of two, then a size below it.
                let exp = rng.range(0, 22);
                rng.range(0, (1u64 << exp).min(MAX)) as usize
            }
        })
        .collect();
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();

    let handles: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let seed = 0x5EED_0000 + i as u64;
            let data = Arc::new(Rng::new(seed).bytes(n));
            thread::Builder::new()
                .name(format!("client-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || chunked_client(addr, data, seed))
                .expect("spawn client thread")
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("client {i} ({} bytes): {e}", sizes[i])),
            Err(_) => Some(format!("client {i} panicked")),
        })
        .collect();
    assert!(failures.is_empty(), "{} of {CLIENTS} clients failed:\n{}", failures.len(), failures.join("\n"));

    // `stop` panics unless `run` returned its stats, which is what the binary exits 0 on.
    let st = server.stop();
    assert_eq!(st.totals.total, CLIENTS as u64, "total connections: {st:?}");
    assert_eq!(st.totals.bytes_in, total, "bytes_in: {st:?}");
    assert_eq!(st.totals.bytes_out, total, "bytes_out: {st:?}");
    assert_eq!(st.totals.open, 0, "open: {st:?}");
}

#[test]
fn half_close_delivers_everything_then_eof() {
    let server = embedded::Server::start(&[]);
    let data = Rng::new(7).bytes(100 * 1024);
    let s = connect(server.addr());
    let mut w = s.try_clone().unwrap();
    let wdata = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&wdata)?;
        w.shutdown(Shutdown::Write)
    });
    let mut r = s;
    let got = read_to_eof(&mut r);
    writer.join().unwrap().expect("write + shutdown(Write)");
    let got = got.expect("read to EOF after half-close");
    assert_bytes_eq(&got, &data, "half-close echo");
}

#[test]
fn client_reset_mid_stream_does_not_hurt_others() {
    let server = embedded::Server::start(&[]);
    let addr = server.addr();

    let a = connect(addr);
    let mut written = 0u64;
    write_until_stalled(&a, 11, &mut written, 8 * MIB as u64);
    assert!(written > 0, "could not write anything");
    // SO_LINGER 0 turns close() into an RST, with data still queued both ways.
    socket2::SockRef::from(&a).set_linger(Some(Duration::ZERO)).unwrap();
    drop(a);

    // Another client is served correctly afterwards.
    echo_roundtrip(addr, &Rng::new(12).bytes(256 * 1024));
    server.assert_alive();

    let st = server.stop();
    assert_eq!(st.totals.open, 0, "open after reset client: {st:?}");
    assert_eq!(st.totals.total, 2, "total: {st:?}");
}

#[test]
fn non_reading_client_is_backpressured_without_memory_growth() {
    const PUSH: u64 = 64 * MIB as u64;
    const LIMIT_KIB: u64 = 16 * 1024;
    let server = Server::start(&[]);
    let addr = server.addr();
    // Warm up so pools, threads and lazily allocated state exist.
    echo_roundtrip(addr, &Rng::new(20).bytes(64 * 1024));
    let before = server.rss_kib();

    let hog = connect(addr);
    let mut written = 0u64;
    write_until_stalled(&hog, 21, &mut written, PUSH);
    let after_fill = server.rss_kib();

    // Meanwhile another client still gets a correct 1 MiB echo.
    let other = connect(addr);
    echo_on(&other, &Rng::new(22).bytes(MIB));
    drop(other);

    // Try once more: the server must still not be reading the hog's data.
    write_until_stalled(&hog, 21, &mut written, PUSH);
    let after = server.rss_kib();
    eprintln!("rss before={before} KiB after_fill={after_fill} KiB after={after} KiB; hog wrote {written} bytes");

    assert!(written < PUSH, "the never-reading client pushed all {PUSH} bytes: the server does not apply backpressure");
    for (label, rss) in [("after fill", after_fill), ("after retry", after)] {
        assert!(
            rss.saturating_sub(before) < LIMIT_KIB,
            "server RSS grew by {} KiB ({label}; before {before} KiB, now {rss} KiB) \
             while a client that never reads pushed {written} bytes",
            rss.saturating_sub(before)
        );
    }
    drop(hog);
}

#[test]
fn zero_byte_connections_then_serving_continues() {
    let server = embedded::Server::start(&[]);
    let addr = server.addr();

    // Connect and close at once without sending anything.
    drop(connect(addr));

    // Connect, half-close without sending: EOF with no data.
    let mut s = connect(addr);
    s.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut s).expect("read to EOF");
    assert!(got.is_empty(), "got {} bytes for an empty request", got.len());
    drop(s);

    echo_roundtrip(addr, b"still serving after empty connections");
    server.assert_alive();

    let st = server.stop();
    assert_eq!(st.totals.total, 3, "total: {st:?}");
    assert_eq!(st.totals.open, 0, "open: {st:?}");
}

#[test]
fn two_thousand_concurrent_connections() {
    const CONNS: usize = 2000;
    const THREADS: usize = 8;
    const PER: usize = CONNS / THREADS;
    // 2000 client sockets here (plus whatever tests run in parallel use), and
    // 2000 accepted ones in the server, which inherits this soft limit.
    raise_nofile(CONNS as u64 + 1024);
    let mut server = Server::start(&[]);
    let addr = server.addr();

    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(), String> {
                let mut socks = Vec::with_capacity(PER);
                let mut err = None;
                for i in 0..PER {
                    match TcpStream::connect_timeout(&addr, BOUND) {
                        Ok(s) => {
                            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                            s.set_nodelay(true).unwrap();
                            socks.push(s);
                        }
                        Err(e) => {
                            err = Some(format!("thread {t}: connect #{i}: {e}"));
                            break;
                        }
                    }
                }
                // All connections of all threads are open at the same time.
                barrier.wait();
                if let Some(e) = err {
                    return Err(e);
                }
                let msg = |i: usize| {
                    let tag = Rng::new((t * PER + i) as u64).next_u64();
                    format!("t{t:02}-c{i:04}-{tag:016x}")
                };
                let res = (|| -> Result<(), String> {
                    for (i, s) in socks.iter_mut().enumerate() {
                        s.write_all(msg(i).as_bytes()).map_err(|e| format!("thread {t}: write #{i}: {e}"))?;
                    }
                    for (i, s) in socks.iter_mut().enumerate() {
                        let want = msg(i);
                        let mut got = vec![0u8; want.len()];
                        s.read_exact(&mut got).map_err(|e| format!("thread {t}: read #{i}: {e}"))?;
                        if got != want.as_bytes() {
                            return Err(format!("thread {t}: conn #{i}: wrong echo"));
                        }
                    }
                    Ok(())
                })();
                // Keep every socket open until all threads are done (every
                // thread gets here: errors above return from the closure only).
                barrier.wait();
                res
            })
        })
        .collect();
    let errors: Vec<String> = handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect();
    assert!(errors.is_empty(), "failures:\n{}", errors.join("\n"));
    server.assert_alive();

    server.signal(Signal::SIGTERM);
    let st = server.final_stats();
    assert_eq!(stat(&st, "total"), CONNS as u64, "total: {st:?}");
    assert_eq!(stat(&st, "open"), 0, "open: {st:?}");
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn ipv4_and_ipv6_listeners_both_echo() {
    let server = embedded::Server::start(&["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let addrs = server.addrs().to_vec();
    assert_eq!(addrs.len(), 2, "two listening addresses bound: {addrs:?}");
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");
    for addr in addrs {
        echo_roundtrip(addr, format!("hello over {addr}").as_bytes());
    }
    assert_eq!(server.stop().totals.total, 2);
}

#[test]
fn json_logs_are_one_object_per_line_with_stable_fields() {
    let mut server = Server::start(&["--log-format", "json"]);
    echo_roundtrip(server.addr(), b"json");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOUND).code(), Some(0));
    let lines = server.lines();
    let objects: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let start = objects.iter().find(|v| message(v).starts_with("listening on ")).expect("a startup line");
    assert_eq!(start["fields"]["mode"], "echo");
    assert!(start["fields"]["workers"].as_u64().unwrap_or(0) >= 1);
    let fin = objects.iter().find(|v| message(v) == "final stats").expect("a final stats line");
    assert_eq!(fin["fields"]["bytes_in"], 4);
    assert_eq!(fin["fields"]["bytes_out"], 4);
    assert_eq!(fin["fields"]["total"], 1);
}

/// Runs `echoport check` and returns (exit code, stdout, stderr).
fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(bin())
        .arg("check")
        .args(args)
        .env_remove("ECHOPORT_MODE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run echoport check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_probe_passes_against_live_servers_and_fails_with_one_line_otherwise() {
    let echo = embedded::Server::start(&[]);
    let chat = embedded::Server::start(&["--mode", "chat"]);
    let (echo_addr, chat_addr) = (echo.addr().to_string(), chat.addr().to_string());

    let (code, out, _) = check(&["--target", &echo_addr]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("ok: echo round trip"), "{out}");
    let (code, out, _) = check(&["--target", &chat_addr, "--mode", "chat"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("ok: PING/PONG"), "{out}");
    // The wrong protocol is a failure, not a hang: an echo server never answers PING with PONG.
    let (code, _, err) = check(&["--target", &echo_addr, "--mode", "chat", "--timeout", "1s"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no PONG: timed out"), "{err}");

    echo.stop();
    let (code, _, err) = check(&["--target", &echo_addr]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with(&format!("error: cannot connect to {echo_addr}")), "{err}");
    chat.stop();
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let mut server = Server::start(&["--metrics-listen", "127.0.0.1:0", "--workers", "3"]);
    let metrics = metrics_addr(&mut server);
    echo_roundtrip(server.addr(), b"twelve bytes");

    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let got = samples(&body);
    let value = |name: &str| got.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value("echoport_received_bytes_total"), Some(12), "{body}");
    assert_eq!(value("echoport_sent_bytes_total"), Some(12), "{body}");
    assert_eq!(value("echoport_connections_accepted_total"), Some(1), "{body}");
    assert_eq!(value("echoport_connections_refused_total"), Some(0), "{body}");
    assert!(value("echoport_connections_open").is_some() && value("echoport_queue_depth").is_some(), "{body}");
    let workers = got.iter().filter(|(n, _)| n.starts_with("echoport_completions_total{worker=")).count();
    assert_eq!(workers, 3, "one completions series per worker: {body}");
    assert!(body.contains("# TYPE echoport_messages_total counter"), "{body}");
    assert!(http_get(metrics, "/other").0.contains("404"));
    // Anything else gets a status line too, and a scraper that never finishes its request is cut
    // off (after 2 s) rather than holding the endpoint.
    let raw = |request: &[u8]| {
        let mut s = connect(metrics);
        s.write_all(request).unwrap();
        String::from_utf8_lossy(&read_to_eof(&mut s).unwrap()).into_owned()
    };
    assert!(raw(b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
    assert!(raw(b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.0 400"));
    assert!(raw(b"GET /metr").starts_with("HTTP/1.0 408"), "an unfinished request is cut off");
    assert!(http_get(metrics, "/metrics?x=1").0.contains("200"), "query parameters are ignored");

    // A client trickling its request a byte at a time neither delays other scrapes nor escapes
    // the request deadline.
    let mut slow = connect(metrics);
    let trickle = thread::spawn({
        let mut slow = slow.try_clone().unwrap();
        move || {
            for &b in b"GET /metrics-but-very-slowly" {
                if slow.write_all(&[b]).is_err() {
                    return; // cut off: what should happen
                }
                thread::sleep(Duration::from_millis(300)); // pacing of the attack, not synchronisation
            }
        }
    });
    slow.write_all(b"G").unwrap();
    assert!(http_get(metrics, "/metrics").0.contains("200"), "a scrape behind a trickling client");
    slow.set_nonblocking(true).unwrap();
    let pending = slow.peek(&mut [0u8; 1]);
    assert!(
        pending.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the scrape was answered only after the trickling client: {pending:?}"
    );
    slow.set_nonblocking(false).unwrap();
    let cut = String::from_utf8_lossy(&read_to_eof(&mut slow).unwrap_or_default()).into_owned();
    assert!(cut.starts_with("HTTP/1.0 408"), "a trickling request is cut off at its deadline: {cut:?}");
    trickle.join().unwrap();

    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOUND).code(), Some(0));
}
