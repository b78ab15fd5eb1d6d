//! Stress tests of the completion port itself, through its public API, over real loopback sockets:
//! many workers and many sockets, and every posted operation completes exactly once. Every test
//! runs on the backend ECHOPORT_TEST_IO names (scripts/test.sh runs the file once per backend;
//! unset: epoll).

use echoport::buffer::BufferPool;
use echoport::port::{Completion, CompletionPort, Io, Socket, Wait};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WORKERS: usize = 8;

/// Per-socket record of what the workers saw, in completion order.
#[derive(Default)]
struct Seen {
    /// By the client each socket serves, read from the socket's own typed context.
    received: HashMap<usize, Vec<u8>>,
    recv_completions: u64,
    send_completions: u64,
}

/// The per-connection state the harness gives each socket: which client it serves.
type Port = CompletionPort<usize>;

/// The backend under test.
fn io() -> Io {
    match std::env::var("ECHOPORT_TEST_IO").as_deref() {
        Ok("uring") => Io::Uring,
        Ok("epoll") | Ok("") | Err(_) => Io::Epoll,
        Ok(other) => panic!("ECHOPORT_TEST_IO={other}: expected uring or epoll"),
    }
}

/// A port on the backend under test, with `threads` cores' worth of workers (epoll: awake at
/// once; io_uring: rings).
fn port(pool: BufferPool, threads: usize) -> Port {
    Port::with_io(io(), pool, threads).expect("port")
}

struct Harness {
    port: Port,
    users: crossbeam_channel::Receiver<u64>,
    seen: Arc<Mutex<Seen>>,
    posted_recv: Arc<AtomicU64>,
    posted_send: Arc<AtomicU64>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Harness {
    /// Workers that echo like the real server but record every completion. A small buffer size
    /// forces many completions per message.
    fn start(buffer_size: usize) -> Harness {
        let port = port(BufferPool::new(buffer_size, 64), 2);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let posted_recv = Arc::new(AtomicU64::new(0));
        let posted_send = Arc::new(AtomicU64::new(0));
        let (users_tx, users) = crossbeam_channel::unbounded();
        let workers = (0..WORKERS)
            .map(|_| {
                let (port, seen, users_tx) = (port.clone(), seen.clone(), users_tx.clone());
                let (posted_recv, posted_send) = (posted_recv.clone(), posted_send.clone());
                thread::spawn(move || {
                    loop {
                        match port.get(None) {
                            Ok(Completion::Recv { socket, result: Ok(buf) }) if buf.is_empty() => {
                                seen.lock().unwrap().recv_completions += 1;
                                port.close(&socket);
                            }
                            Ok(Completion::Recv { socket, result: Ok(buf) }) => {
                                {
                                    let mut s = seen.lock().unwrap();
                                    s.recv_completions += 1;
                                    s.received.entry(*socket.context()).or_default().extend_from_slice(&buf);
                                }
                                posted_send.fetch_add(1, Ordering::SeqCst);
                                port.post_send(&socket, buf);
                            }
                            Ok(Completion::Send { socket, result: Ok(_) }) => {
                                seen.lock().unwrap().send_completions += 1;
                                posted_recv.fetch_add(1, Ordering::SeqCst);
                                port.post_recv(&socket);
                            }
                            Ok(Completion::Recv { result: Err(e), .. } | Completion::Send { result: Err(e), .. }) => {
                                panic!("unexpected I/O error: {e}")
                            }
                            Ok(Completion::User(v)) => users_tx.send(v).unwrap(),
                            Err(Wait::TimedOut) => {}
                            Err(Wait::Closed) => return,
                        }
                    }
                })
            })
            .collect();
        Harness { port, users, seen, posted_recv, posted_send, workers }
    }

    fn associate(&self, stream: TcpStream, client: usize) -> Arc<Socket<usize>> {
        stream.set_nonblocking(true).unwrap();
        let socket = self.port.associate(mio::net::TcpStream::from_std(stream), client).expect("associate");
        self.posted_recv.fetch_add(1, Ordering::SeqCst);
        self.port.post_recv(&socket);
        socket
    }

    fn stop(self) -> Seen {
        self.port.shutdown();
        for w in self.workers {
            w.join().expect("worker panicked");
        }
        Arc::try_unwrap(self.seen).ok().expect("workers gone").into_inner().unwrap()
    }
}

fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Deterministic bytes that differ per client and position, so a misrouted or repeated chunk shows.
fn pattern(client: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + client * 7 + i / 251) % 256) as u8).collect()
}

#[test]
fn every_operation_completes_exactly_once_across_workers_and_sockets() {
    const CLIENTS: usize = 64;
    let h = Harness::start(512);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, server) = pair(&listener);
        assert_eq!(*h.associate(server, c).context(), c);
        clients.push((c, client));
    }
    let drivers: Vec<_> = clients
        .into_iter()
        .map(|(c, mut client)| {
            thread::spawn(move || {
                client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let data = pattern(c, 20_000 + c * 997);
                let mut reader = client.try_clone().unwrap();
                let expect = data.clone();
                let check = thread::spawn(move || {
                    let mut got = Vec::new();
                    reader.read_to_end(&mut got).expect("read echo");
                    assert!(got == expect, "client {c}: echo differs ({} of {} bytes)", got.len(), expect.len());
                });
                for chunk in data.chunks(700 + c * 13) {
                    client.write_all(chunk).unwrap();
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
                check.join().unwrap();
                data
            })
        })
        .collect();
    let sent: Vec<Vec<u8>> = drivers.into_iter().map(|d| d.join().expect("client failed")).collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while h.port.open_sockets() > 0 && Instant::now() < deadline {
        h.port.wait_closed(deadline);
    }
    assert_eq!(h.port.open_sockets(), 0, "every socket saw its end of stream and was closed");
    let (posted_recv, posted_send) = (h.posted_recv.load(Ordering::SeqCst), h.posted_send.load(Ordering::SeqCst));
    let seen = h.stop();
    assert_eq!(seen.recv_completions, posted_recv, "one completion per posted receive");
    assert_eq!(seen.send_completions, posted_send, "one completion per posted send");
    assert_eq!(seen.received.len(), CLIENTS, "every socket reported data under its own context");
    for (c, sent) in sent.iter().enumerate() {
        assert!(seen.received[&c] == *sent, "the socket of client {c} received exactly its bytes, in order");
    }
}

#[test]
fn user_completions_are_delivered_once_each() {
    const POSTERS: u64 = 4;
    const EACH: u64 = 5_000;
    let h = Harness::start(512);
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let port = h.port.clone();
            thread::spawn(move || (0..EACH).for_each(|i| port.post_user(p * EACH + i)))
        })
        .collect();
    posters.into_iter().for_each(|p| p.join().unwrap());
    let mut users: Vec<u64> = (0..POSTERS * EACH)
        .map(|_| h.users.recv_timeout(Duration::from_secs(30)).expect("a posted completion was lost"))
        .collect();
    h.stop();
    users.sort_unstable();
    assert_eq!(users, (0..POSTERS * EACH).collect::<Vec<_>>(), "each value exactly once");
}

/// `defer_user` from a worker queues the value behind that worker's own batch, ahead of what
/// waits for any worker; from any other thread it is a plain `post_user`.
#[test]
fn a_deferred_user_completion_stays_with_the_worker_that_deferred_it() {
    let port = port(BufferPool::new(512, 1), 1);
    let wait = Some(Duration::from_secs(10));
    let user = |c: Result<Completion<usize>, Wait>| match c {
        Ok(Completion::User(v)) => v,
        other => panic!("expected a user completion, got {other:?}"),
    };
    // From a thread that is no worker: whichever worker looks takes it.
    port.defer_user(1);
    let w = port.clone();
    let (to_main, from_w) = crossbeam_channel::bounded(1);
    let (to_w, from_main) = crossbeam_channel::bounded::<()>(1);
    let worker = thread::spawn(move || {
        to_main.send(user(w.get(wait))).unwrap();
        from_main.recv().unwrap();
        // A worker now: what it defers comes before the value already waiting for any worker.
        w.defer_user(2);
        [user(w.get(wait)), user(w.get(wait))]
    });
    assert_eq!(from_w.recv_timeout(Duration::from_secs(30)).expect("the worker took 1"), 1);
    port.post_user(3);
    to_w.send(()).unwrap();
    assert_eq!(worker.join().unwrap(), [2, 3]);
    port.shutdown();
}

#[test]
fn get_times_out_on_an_idle_port_and_reports_shutdown() {
    let port = port(BufferPool::new(512, 1), 1);
    let t0 = Instant::now();
    assert_eq!(port.get(Some(Duration::from_millis(50))).unwrap_err(), Wait::TimedOut);
    assert!(t0.elapsed() >= Duration::from_millis(50));
    port.post_user(7);
    assert!(matches!(port.get(Some(Duration::from_secs(10))), Ok(Completion::User(7))));
    port.shutdown();
    assert_eq!(port.get(None).unwrap_err(), Wait::Closed);
}

#[test]
fn a_waiting_receive_holds_no_buffer_and_closed_sockets_leave_the_table() {
    let h = Harness::start(4096);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut clients = Vec::new();
    for c in 0..50 {
        let (client, server) = pair(&listener);
        h.associate(server, c);
        clients.push(client);
    }
    // One echo proves the port is live; afterwards every socket waits with no buffer taken.
    clients[0].write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    clients[0].set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    clients[0].read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(h.port.open_sockets(), 50);
    assert!(h.port.pool().idle() <= 1, "at most the one buffer used for the echo was ever allocated");
    h.port.close_all();
    assert_eq!(h.port.open_sockets(), 0);
    let mut buf = [0u8; 1];
    assert_eq!(clients[1].read(&mut buf).unwrap(), 0, "closing the socket closes the connection");
    h.stop();
}

/// Sockets come and go and each new one takes the table index (io_uring: the file-table slot)
/// the last one left: every connection gets its own bytes back, never a closed one's, and a
/// connection that stays meanwhile is not disturbed.
#[test]
fn a_closed_sockets_index_serves_the_next_socket() {
    let h = Harness::start(4096);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut stayer, server) = pair(&listener);
    h.associate(server, 0);
    stayer.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for round in 1..=200 {
        let (mut client, server) = pair(&listener);
        h.associate(server, round);
        client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mine = pattern(round, 300);
        client.write_all(&mine).unwrap();
        let mut got = vec![0u8; mine.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, mine, "round {round}: the echo is this connection's own bytes");
        let theirs = pattern(0, 40 + round % 7);
        stayer.write_all(&theirs).unwrap();
        let mut got = vec![0u8; theirs.len()];
        stayer.read_exact(&mut got).unwrap();
        assert_eq!(got, theirs, "round {round}: the connection that stays is undisturbed");
        // The peer's FIN makes the harness close the socket; the server's FIN back is the signal.
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "round {round}: nothing after the echo");
    }
    // The peer sees the server's FIN before the closing worker has taken the socket out of the
    // table; once the workers are gone, every close they began has finished.
    let port = h.port.clone();
    h.stop();
    assert_eq!(port.open_sockets(), 1, "only the connection that stays is open");
}

/// epoll: a thread is a worker of the port it last called `get` on; moving to another port, it
/// hands the completions it produced itself back to the first, so they are not stranded.
/// io_uring: a thread that has taken a ring keeps it for the port's life (the ring is single-
/// issuer), and a thread may own rings of several ports: after working for `b` it still takes
/// its completions of `a`.
#[test]
fn a_thread_working_for_two_ports_strands_no_completion() {
    let pool = BufferPool::new(512, 4);
    let (a, b) = (port(pool.clone(), 1), port(pool.clone(), 1));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut client, server) = pair(&listener);
    server.set_nonblocking(true).unwrap();
    let socket = a.associate(mio::net::TcpStream::from_std(server), 0).unwrap();

    // This thread becomes a worker of `a`; the send it posts completes at once (epoll: into its
    // private queue; io_uring: into its ring).
    a.post_user(1);
    assert!(matches!(a.get(Some(Duration::from_secs(10))), Ok(Completion::User(1))));
    let mut buf = pool.take();
    buf.spare()[..2].copy_from_slice(b"hi");
    buf.set_len(2);
    a.post_send(&socket, buf);

    // Working for `b` now must not strand that completion.
    assert_eq!(b.get(Some(Duration::from_millis(10))).unwrap_err(), Wait::TimedOut);
    let completion = match io() {
        Io::Epoll => {
            let a = a.clone();
            thread::spawn(move || a.get(Some(Duration::from_secs(10)))).join().unwrap()
        }
        Io::Uring => a.get(Some(Duration::from_secs(10))),
    };
    match completion {
        Ok(Completion::Send { result: Ok(sent), .. }) => assert_eq!(sent, 2),
        other => panic!("expected the send completion, got {other:?}"),
    }
    let mut got = [0u8; 2];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    a.shutdown();
    b.shutdown();
    assert_eq!(a.get(None).unwrap_err(), Wait::Closed);
    assert_eq!(b.get(None).unwrap_err(), Wait::Closed);
}

#[test]
fn get_after_shutdown_keeps_reporting_closed() {
    let port = port(BufferPool::new(512, 1), 1);
    port.shutdown();
    for _ in 0..3 {
        assert_eq!(port.get(None).unwrap_err(), Wait::Closed);
    }
}

/// A thread handles each received buffer before it reads the next socket of its batch, so
/// hundreds of sockets ready at once need only a few buffers, not one each (what the idle
/// connection cost and the burst memory of a busy server come down to).
#[test]
fn a_burst_of_ready_sockets_borrows_few_buffers() {
    const CLIENTS: usize = 200;
    let pool = BufferPool::new(16 * 1024, 1024);
    let port = port(pool.clone(), 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (mut client, server) = pair(&listener);
        // Data waits before the port knows the socket: the first poll finds every one readable.
        client.write_all(b"x").unwrap();
        server.set_nonblocking(true).unwrap();
        let socket = port.associate(mio::net::TcpStream::from_std(server), 0).expect("associate");
        port.post_recv(&socket);
        clients.push(client);
    }
    let worker = {
        let port = port.clone();
        thread::spawn(move || {
            loop {
                match port.get(None) {
                    Ok(Completion::Recv { socket, result: Ok(buf) }) => port.post_send(&socket, buf),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
    };
    for client in &mut clients {
        client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut byte = [0u8; 1];
        client.read_exact(&mut byte).expect("echo");
        assert_eq!(&byte, b"x");
    }
    port.shutdown();
    worker.join().unwrap();
    // Every buffer is back in the pool now; how many exist is how many were out at once.
    assert!(pool.idle() <= 4, "{} buffers were borrowed at once for {CLIENTS} ready sockets", pool.idle());
}

/// A send the peer is too slow for stays posted; how much of it the kernel already took is
/// visible (chat's send-queue limit counts only what the process still holds).
#[test]
fn a_stalled_send_reports_what_the_kernel_took() {
    const TOTAL: usize = 64 << 20;
    let port = port(BufferPool::new(512, 1), 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_client, server) = pair(&listener);
    server.set_nonblocking(true).unwrap();
    let socket = port.associate(mio::net::TcpStream::from_std(server), 0).expect("associate");
    assert_eq!(socket.posted_send_progress(), 0, "nothing posted");
    let lines: std::collections::VecDeque<Arc<[u8]>> =
        (0..TOTAL >> 20).map(|_| Arc::from(vec![7u8; 1 << 20])).collect();
    // epoll tries it at once; io_uring once this thread, taking the ring, has submitted it. The
    // kernel takes what fits in the socket buffers, the rest waits.
    port.post_send(&socket, lines);
    let deadline = Instant::now() + Duration::from_secs(30);
    while socket.posted_send_progress() == 0 && Instant::now() < deadline {
        assert!(
            matches!(port.get(Some(Duration::from_millis(50))), Err(Wait::TimedOut)),
            "a send nobody reads completed"
        );
    }
    let taken = socket.posted_send_progress();
    assert!(taken > 0 && taken < TOTAL, "the kernel took {taken} of {TOTAL} bytes of a send nobody reads");
    port.close(&socket);
    assert_eq!(socket.posted_send_progress(), 0, "a closed socket has no send posted");
}

/// The bytes of the next completion, which must be a successful receive, by polling (zero-timeout
/// gets), so a completion nobody asked for shows; fails after `deadline`.
fn poll_recv(port: &Port, deadline: Instant) -> Vec<u8> {
    loop {
        match port.get(Some(Duration::ZERO)) {
            Ok(Completion::Recv { result: Ok(buf), .. }) => return buf.to_vec(),
            Err(Wait::TimedOut) => {
                assert!(Instant::now() < deadline, "polling never returned the posted receive");
                thread::yield_now();
            }
            Ok(other) => panic!("an unexpected completion: {other:?}"),
            Err(Wait::Closed) => panic!("the port closed"),
        }
    }
}

/// A zero timeout polls: with nothing ready it says `TimedOut` (rather than waiting), and a
/// receive whose data has arrived comes back from polling alone (on io_uring the poll itself runs
/// the ring's deferred completion work).
#[test]
fn a_zero_timeout_get_polls() {
    let port = port(BufferPool::new(512, 1), 1);
    assert_eq!(port.get(Some(Duration::ZERO)).unwrap_err(), Wait::TimedOut);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut client, server) = pair(&listener);
    server.set_nonblocking(true).unwrap();
    let socket = port.associate(mio::net::TcpStream::from_std(server), 0).expect("associate");
    port.post_recv(&socket);
    client.write_all(b"ping").unwrap();
    let got = poll_recv(&port, Instant::now() + Duration::from_secs(30));
    assert_eq!(got, b"ping");
    port.close(&socket);
}

/// Bytes that arrive while no receive is posted (the handler is slow to post the next one) wait
/// for the next receives: each post gets one completion, none comes unasked, and the bytes come
/// in order, once. (io_uring's multishot receive reads them meanwhile and holds them, then stops
/// reading; epoll leaves them in the kernel.)
#[test]
fn bytes_that_arrive_with_no_receive_posted_wait_for_the_next_one() {
    let port = port(BufferPool::new(4096, 4), 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut client, server) = pair(&listener);
    server.set_nonblocking(true).unwrap();
    let socket = port.associate(mio::net::TcpStream::from_std(server), 0).expect("associate");
    let deadline = Instant::now() + Duration::from_secs(30);
    let next_recv = || poll_recv(&port, deadline);
    port.post_recv(&socket);
    client.write_all(b"first.").unwrap();
    let mut got = next_recv();
    // No receive posted: the bytes are on the server's socket (loopback delivers them within
    // the write), and polling lets a backend reap them; nothing may complete.
    for chunk in [&b"second."[..], b"third.", b"fourth."] {
        client.write_all(chunk).unwrap();
        for _ in 0..3 {
            assert!(
                matches!(port.get(Some(Duration::ZERO)), Err(Wait::TimedOut)),
                "a completion with no receive posted"
            );
        }
    }
    let want = b"first.second.third.fourth.fifth.";
    let mut wrote_fifth = false;
    while got.len() < want.len() {
        if !wrote_fifth && got.len() == b"first.second.third.fourth.".len() {
            // After a stop, reading starts again with the next post.
            client.write_all(b"fifth.").unwrap();
            wrote_fifth = true;
        }
        port.post_recv(&socket);
        got.extend(next_recv());
        assert!(want.starts_with(&got), "bytes out of order or repeated: {:?}", String::from_utf8_lossy(&got));
    }
    assert_eq!(got, want);
    port.close(&socket);
}
