//! The server embedded in a program (here, the test): `Server::bind` on port 0, `run` on a
//! thread, stopped with the `Shutdown` token, and judged by the `FinalStats` that `run` returns.
//! No process, no signal, no log parsing; what needs signals or rlimits stays in the other suites.

mod common;

use common::{BOUND, Rng, assert_bytes_eq, connect, read_to_eof};
use echoport::config::{Config, Mode};
use echoport::server::{FinalStats, Server, StartError};
use echoport::shutdown::{Phase, Shutdown};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Defaults, on a free loopback port, no periodic stats line.
fn config() -> Config {
    Config { listen: vec!["127.0.0.1:0".parse().unwrap()], stats_interval: None, ..Config::default() }
}

struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    /// What `run` returned, sent by its thread as it ends.
    done: mpsc::Receiver<Result<FinalStats, StartError>>,
}

fn start(config: &Config) -> Running {
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0, "the bound port is known before run");
    let (shutdown, (tx, done)) = (Shutdown::new(), mpsc::channel());
    let token = shutdown.clone();
    thread::spawn(move || tx.send(server.run(token)));
    Running { addr, shutdown, done }
}

impl Running {
    /// Requests the shutdown and waits, bounded, for `run` to return its stats.
    fn stop(self) -> FinalStats {
        self.shutdown.request();
        let result = self.done.recv_timeout(BOUND).unwrap_or_else(|e| panic!("run did not return in {BOUND:?}: {e}"));
        let stats = result.expect("run failed");
        assert_eq!(self.shutdown.phase(), Phase::Stopped, "run leaves the token stopped");
        stats
    }
}

#[test]
fn echo_in_process_then_stop_returns_exact_totals() {
    let server = start(&config());
    let mut rng = Rng::new(3);
    let mut sent = 0u64;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let data = rng.bytes(1 + i * 37_001);
            sent += data.len() as u64;
            let addr = server.addr;
            thread::spawn(move || {
                let mut s = connect(addr);
                let writer = {
                    let (mut w, data) = (s.try_clone().unwrap(), data.clone());
                    thread::spawn(move || {
                        w.write_all(&data).unwrap();
                        w.shutdown(Half::Write).unwrap();
                    })
                };
                let got = read_to_eof(&mut s).expect("read the echo");
                writer.join().unwrap();
                assert_bytes_eq(&got, &data, "echo");
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().expect("client failed"));

    let stats = server.stop();
    let t = &stats.totals;
    assert_eq!((t.total, t.open, t.errors), (8, 0, 0), "{stats:?}");
    assert_eq!((t.bytes_in, t.bytes_out), (sent, sent), "every byte in came back out: {stats:?}");
    assert_eq!(stats.cut_off, 0);
    assert_eq!(stats.limit_hits.iter().map(|&(_, n)| n).sum::<u64>(), 0, "no limit hit: {stats:?}");
}

#[test]
fn a_connection_that_never_reads_is_cut_off_at_the_shutdown_timeout() {
    let config = Config { shutdown_timeout: Duration::from_millis(300), ..config() };
    let server = start(&config);
    let mut stuck = connect(server.addr);
    // Echo the client's bytes until its receive buffer and the server's send buffer are full:
    // the server's send stays posted, so the drain cannot end this connection as quiet.
    stuck.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    loop {
        match stuck.write(&chunk) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write failed before the buffers filled: {e}"),
        }
    }
    let stats = server.stop();
    assert_eq!(stats.cut_off, 1, "the stuck connection outlived the drain: {stats:?}");
    assert_eq!(stats.totals.open, 0, "and was closed: {stats:?}");
    // Closed under it: the client sees its connection end (after what was already echoed).
    stuck.set_read_timeout(Some(BOUND)).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match stuck.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the connection to end, got {e}"),
        }
    }
}

#[test]
fn a_shutdown_requested_before_run_drains_nothing_and_returns() {
    let server = Server::bind(&config()).unwrap();
    let shutdown = Shutdown::new();
    shutdown.request();
    let stats = server.run(shutdown).expect("run");
    assert_eq!((stats.totals.total, stats.cut_off), (0, 0));
}

#[test]
fn start_errors_keep_their_kind_and_say_what_failed() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::bind(&Config { listen: vec![addr], ..config() }).err().expect("the port is taken");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(matches!(err, StartError::Listen { addr: a, .. } if a == addr), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot listen on {addr}: ")), "{err}");

    let metrics = Config { metrics_listen: Some(addr), ..config() };
    let err = Server::bind(&metrics).err().expect("the metrics port is taken");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().starts_with(&format!("cannot serve metrics on {addr}: ")), "{err}");

    let mut chat = Config { mode: Mode::Chat, ..config() };
    chat.chat.motd = Some("/nonexistent/motd.txt".into());
    let err = Server::bind(&chat).err().expect("no such motd");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().starts_with("cannot read --motd file '/nonexistent/motd.txt': "), "{err}");
}

#[test]
fn chat_in_process_counts_what_it_refused() {
    let config = Config { mode: Mode::Chat, max_conns: 1, ..config() };
    let server = start(&config);
    let mut first = connect(server.addr);
    first.write_all(b"NICK a\r\nUSER a 0 * :A\r\n").unwrap();
    let mut welcome = [0u8; 1];
    first.read_exact(&mut welcome).expect("the first client is served");
    let mut second = connect(server.addr);
    let refusal = String::from_utf8(read_to_eof(&mut second).expect("refused cleanly")).unwrap();
    assert!(refusal.starts_with("ERROR :Closing Link: 127.0.0.1 (Server full)"), "{refusal:?}");
    drop(first);
    let stats = server.stop();
    assert_eq!(stats.hits("max_conns"), 1, "{stats:?}");
    assert_eq!(stats.totals.refused, 1, "{stats:?}");
}
