//! The Windows build (x86_64-pc-windows-gnu) under Wine, driven from Linux: `wine echoport.exe`
//! is a child process of this test, clients connect from Linux over 127.0.0.1. Byte-exact echo
//! under concurrency and through TLS, half-close, a client that never reads, IPv4 and IPv6
//! listeners, a port in use, a chat conversation, `check`, a graceful stop on Ctrl-C, and the load
//! tool's .exe.
//!
//! Run by scripts/test-windows.sh, which builds the .exe files, the bcryptprimitives.dll shim
//! beside them, prepares the Wine prefix and starts its wineserver, then runs
//! `cargo test --test windows -- --ignored` with WINE_EXE_DIR naming the .exe directory. Without
//! the script the tests are ignored; run with --ignored but without WINE_EXE_DIR they fail.
//!
//! Ctrl-C: Wine turns SIGINT to a console program's process into CTRL_C_EVENT for its console
//! control handlers (SetConsoleCtrlHandler), so the test signals the wine child's PID. The wine
//! launcher execs the loader, which becomes the Windows process: that PID is the server's. Wine 8.0
//! has no way to deliver the other events: GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) fails (with
//! or without a console), and SIGHUP (a closed terminal) kills the process without CTRL_CLOSE_EVENT.
//!
//! Readiness is the server's `listening on` line, as for the Linux binary (tests/common). Every
//! wait is bounded; the wine process is killed and reaped on drop.

// Wine and the Linux side of the sockets: a test of the Windows build from a Linux host.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::Read;
use std::net::Shutdown;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use irc::{Client, WAIT};
use nix::sys::signal::Signal;

const MIB: u64 = 1024 * 1024;

/// Starting a Windows program costs Wine a few hundred ms; a loaded CI box may take longer.
const WINE_RUN: Duration = Duration::from_secs(60);

/// The directory holding echoport.exe and echoport-load.exe (and the DLL shim Wine needs).
fn exe(name: &str) -> PathBuf {
    let Some(dir) = std::env::var_os("WINE_EXE_DIR") else {
        panic!(
            "WINE_EXE_DIR is not set: these tests run the Windows build under Wine; \
             run scripts/test-windows.sh, which builds it and sets WINE_EXE_DIR"
        );
    };
    let path = PathBuf::from(dir).join(name);
    assert!(path.is_file(), "{} does not exist (WINE_EXE_DIR); build it with scripts/test-windows.sh", path.display());
    path
}

/// The Wine launcher: $WINE, else `wine` from PATH.
fn wine() -> std::ffi::OsString {
    std::env::var_os("WINE").unwrap_or_else(|| "wine".into())
}

/// `wine echoport.exe --listen 127.0.0.1:0 ... args`, started and listening.
fn wine_server(args: &[&str]) -> Server {
    Server::builder().program(wine(), [exe("echoport.exe")]).args(args).spawn()
}

/// `wine NAME.exe args...`, run to completion (bounded).
fn wine_run(name: &str, args: &[&str]) -> Ran {
    let mut cmd = Command::new(wine());
    cmd.arg(exe(name)).args(args);
    let ran = run_bounded(cmd, WINE_RUN);
    assert!(ran.status.is_some(), "wine {name} {args:?} did not finish within {WINE_RUN:?}: {ran:?}");
    ran
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn concurrent_clients_byte_exact_echo() {
    const CLIENTS: usize = 200;
    const MAX: u64 = MIB;
    let server = wine_server(&[]);
    let addr = server.addr();
    let mut rng = Rng::new(0x3135_0001);
    let sizes: Vec<usize> = (0..CLIENTS)
        .map(|i| match i {
            0 => 0,
            1 => MAX as usize,
            // Log-uniform-ish: a power of two, then a size below it.
            _ => {
                let exp = rng.range(0, 20);
                rng.range(0, 1 << exp) as usize
            }
        })
        .collect();
    let handles: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let data = Arc::new(Rng::new(0x3135_1000 + i as u64).bytes(n));
            thread::Builder::new()
                .name(format!("client-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || try_echo_roundtrip(addr, &data).map(|got| (got, data)))
                .expect("spawn client thread")
        })
        .collect();
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join().expect("client thread panicked") {
            Ok((got, data)) if got == *data => {}
            Ok((got, data)) => failures.push(format!(
                "client {i}: got {} of {} bytes, first difference at {:?}",
                got.len(),
                data.len(),
                first_diff(&got, &data)
            )),
            Err(e) => failures.push(format!("client {i} ({} bytes): {e}", sizes[i])),
        }
    }
    assert!(failures.is_empty(), "{} of {CLIENTS} clients failed:\n{}", failures.len(), failures.join("\n"));
    server.assert_no_warnings("200 clients echoed");
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn half_close_gets_everything_then_eof() {
    const SEED: u64 = 0x3135_0002;
    let mut server = wine_server(&[]);
    let mut c = connect(server.addr());
    // Send without reading until the server stops reading (its sends to us are stuck): it now
    // holds echo bytes it owes us. Then close our write side and only then read.
    let mut written = 0;
    write_until_stalled(&c, SEED, &mut written, 256 * MIB);
    assert!(written > 0 && written < 256 * MIB, "the server never stopped reading from a client that does not read");
    c.shutdown(Shutdown::Write).unwrap();
    if let Err(e) = read_pattern_to_eof(&mut c, SEED, written) {
        panic!("after the half-close of {written} bytes sent: {e}");
    }
    server.assert_alive();
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn client_that_never_reads_does_not_stop_the_others() {
    let mut server = wine_server(&[]);
    let addr = server.addr();
    let hog = connect(addr);
    let mut written = 0;
    write_until_stalled(&hog, 0x3135_0003, &mut written, 256 * MIB);
    assert!(written < 256 * MIB, "the server never stopped reading from a client that does not read");
    // The hog stays connected with its echo stuck while others come and go.
    let others: Vec<_> = (0..20u64)
        .map(|i| {
            let data = Rng::new(0x3135_2000 + i).bytes(64 * 1024 + i as usize);
            thread::spawn(move || echo_roundtrip(addr, &data))
        })
        .collect();
    for h in others {
        h.join().expect("a client beside the one that never reads failed");
    }
    server.assert_alive();
    drop(hog);
    echo_roundtrip(addr, b"still serving after the hog left");
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn chat_conversation_between_three_clients() {
    let server = wine_server(&["--mode", "chat", "--flood-rate", "0"]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    let mut carol = Client::registered(addr, "carol");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("#wine");
    }
    // Each member sees the later ones join.
    for (c, joiners) in [(&mut alice, &["bob", "carol"][..]), (&mut bob, &["carol"][..])] {
        for &nick in joiners {
            let m = c.expect(|m| m.is("JOIN"), WAIT);
            assert_eq!((m.nick(), m.param(0)), (nick, "#wine"), "{m}");
        }
    }
    alice.send("PRIVMSG #wine :hello from alice");
    for c in [&mut bob, &mut carol] {
        let m = c.expect(|m| m.is("PRIVMSG"), WAIT);
        assert_eq!((m.nick(), m.param(0), m.last()), ("alice", "#wine", "hello from alice"), "{m}");
    }
    bob.send("PRIVMSG carol :just for you");
    let m = carol.expect(|m| m.is("PRIVMSG"), WAIT);
    assert_eq!((m.nick(), m.param(0), m.last()), ("bob", "carol", "just for you"), "{m}");
    // The sender does not get its own channel message, nor anyone else's private one.
    bob.sync();
    alice.assert_quiet("after her own PRIVMSG and bob's private one");

    let ran = wine_run("echoport.exe", &["check", "--target", &addr.to_string(), "--mode", "chat"]);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with("ok: PING/PONG"), "{ran:?}");

    alice.send("QUIT :bye");
    for c in [&mut bob, &mut carol] {
        let m = c.expect(|m| m.is("QUIT"), WAIT);
        assert_eq!(m.nick(), "alice", "{m}");
    }
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn check_passes_against_the_running_server() {
    let server = wine_server(&[]);
    let ran = wine_run("echoport.exe", &["check", "--target", &server.addr().to_string()]);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with("ok: echo round trip"), "{ran:?}");
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn ctrl_c_drains_then_exits_zero() {
    const SEED: u64 = 0x3135_0004;
    let mut server = wine_server(&[]);
    let addr = server.addr();
    let mut idle = connect(addr);
    echo_on(&idle, b"hello, then idle");
    let mut owed = connect(addr);
    let mut written = 0;
    write_until_stalled(&owed, SEED, &mut written, 256 * MIB);
    assert!(written > 0 && written < 256 * MIB, "the server never stopped reading from a client that does not read");
    owed.shutdown(Shutdown::Write).unwrap();

    // Wine delivers SIGINT as CTRL_C_EVENT (see the top of this file).
    server.signal(Signal::SIGINT);
    server.expect_line("shutdown requested", BOUND);
    let mut buf = [0u8; 16];
    let r = idle.read(&mut buf);
    assert!(matches!(r, Ok(0)), "an idle client should see EOF on shutdown, read gave {r:?}");
    if let Err(e) = read_pattern_to_eof(&mut owed, SEED, written) {
        panic!("after Ctrl-C the client that wrote {written} bytes got back: {e}");
    }
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}\n{}", server.log());
    server.expect_line("shutdown complete", BOUND);
    server.assert_no_warnings("Ctrl-C with one idle and one owed client");

    let ran = wine_run("echoport.exe", &["check", "--target", &addr.to_string(), "--timeout", "2s"]);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(1), "check against a stopped server: {ran:?}");
    assert!(ran.stderr.contains("cannot connect"), "{ran:?}");
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn load_tool_runs_against_the_windows_server() {
    let server = wine_server(&[]);
    let target = server.addr().to_string();
    let ran = wine_run(
        "echoport-load.exe",
        &["echo", "--target", &target, "--conns", "8", "--duration", "1", "--warmup", "0.2", "-q"],
    );
    assert_eq!(ran.status.and_then(|s| s.code()), Some(0), "{ran:?}");
    let row = |out: &str, key: &str| {
        out.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned())).unwrap_or_default()
    };
    assert_eq!(row(&ran.stdout, "errors "), "0", "{ran:?}");
    assert_eq!(row(&ran.stdout, "mismatches "), "0", "{ran:?}");
    assert!(row(&ran.stdout, "messages ").parse::<u64>().is_ok_and(|n| n > 0), "{ran:?}");

    // Windows has no /proc: the idle report says the server's memory is not available.
    let pid = server.pid().to_string();
    let ran = wine_run(
        "echoport-load.exe",
        &["idle", "--target", &target, "--conns", "4", "--hold", "0.2", "--server-pid", &pid, "-q"],
    );
    assert_eq!(ran.status.and_then(|s| s.code()), Some(0), "{ran:?}");
    assert_eq!(row(&ran.stdout, "rss_note "), "not available on this OS", "{ran:?}");
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn ipv4_and_ipv6_listeners_both_echo() {
    let server = wine_server(&["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let addrs = server.addrs().to_vec();
    assert_eq!(addrs.len(), 2, "two listening addresses bound: {addrs:?}");
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");
    for addr in addrs {
        echo_roundtrip(addr, format!("hello over {addr}").as_bytes());
    }
    server.assert_no_warnings("IPv4 and IPv6");
}

/// Without SO_REUSEADDR (on Windows it would let a second server bind a port in use), a second
/// server on the same port is refused with one line naming the address, and exits 2.
#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn a_port_in_use_is_a_clear_start_error() {
    let server = wine_server(&[]);
    let addr = server.addr().to_string();
    let ran = wine_run("echoport.exe", &["--listen", &addr]);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(2), "{ran:?}");
    let line = ran.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(line.starts_with(&format!("error: cannot listen on {addr}: ")), "{ran:?}");
    echo_roundtrip(server.addr(), b"the first server still serves");
}

/// A Linux path as the Windows program sees it: Wine maps `/` to drive Z:.
fn wine_path(path: &std::path::Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

#[test]
#[ignore = "runs under Wine: scripts/test-windows.sh"]
fn tls_echo_is_byte_exact_on_the_windows_build() {
    let pair = tls::Pair::new();
    let files = tls::CertFiles::new(&pair);
    let (cert, key) = (wine_path(&files.cert), wine_path(&files.key));
    let server = wine_server(&["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key]);
    let addr = server.tls_addr();
    // 1 B, a record's worth, and several records in writes cut at random.
    for (i, n) in [1usize, 16 * 1024, 300 * 1024].into_iter().enumerate() {
        let client = tls::TlsClient::connect(addr, &pair);
        let data = Rng::new(0x3135_7200 + i as u64).bytes(n);
        let mut cuts = Rng::new(0x3135_7300 + i as u64);
        client.echo(&data, move || cuts.range(1, 70_000) as usize).unwrap_or_else(|e| panic!("{n} bytes: {e}"));
    }
    server.assert_no_warnings("TLS echo");
}
