//! The ceilings of the completion port's shared pieces, measured without sockets; what each piece
//! is and where it sits on a message's path is in docs/scaling.md.
//!
//! Each row runs N threads together for about half a second, through the library's public API
//! only, and reports the throughput of all of them: Mops/s, and ns/op = wall-clock nanoseconds per
//! operation (what the piece costs when it is the bottleneck). N may exceed the machine's cores:
//! the threads then share the cores, and the row shows what the design does under that.
//!
//!     cargo bench --bench ceilings        # or scripts/bench-ceilings.sh

use echoport::buffer::BufferPool;
use echoport::port::{Completion, CompletionPort, Io, Wait};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const THREADS: [usize; 4] = [1, 2, 4, 8];
/// How long each row runs.
const SLICE: Duration = Duration::from_millis(500);
/// Operations between two looks at the clock.
const BATCH: u64 = 64;
/// User completions the producers let wait in the port before they yield: keeps memory bounded
/// and the queue saturated, so consumers never run dry and the row is the queue's ceiling.
const BACKLOG: usize = 4096;
/// The server's default --buffer-size.
const BUFFER_SIZE: usize = 16384;
/// A user completion that tells its consumer to stop.
const STOP: u64 = u64::MAX;
/// Longest a consumer waits for a completion: a stuck row ends instead of hanging the bench.
const STALL: Duration = Duration::from_secs(5);

type Port = CompletionPort<()>;

fn main() {
    // `cargo bench --bench ceilings -- WORD`: only the rows whose piece or backend contains WORD.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let row = |piece: &str, backend: &str, threads: usize, rate: &dyn Fn(usize) -> f64| {
        if piece.contains(&only) || backend.contains(&only) {
            let ops_per_sec = rate(threads);
            println!("{piece:<36} {backend:<7} {threads:>7} {:>9.2} {:>9.0}", ops_per_sec / 1e6, 1e9 / ops_per_sec);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# {cores} cores; each row ~{} ms; ns/op: wall time per operation, all threads together",
        SLICE.as_millis()
    );
    println!("{:<36} {:<7} {:>7} {:>9} {:>9}", "piece", "backend", "threads", "Mops/s", "ns/op");
    for n in THREADS {
        row("buffer pool per thread (control)", "-", n, &|n| pool(n, false, 2));
    }
    for n in THREADS {
        row("buffer pool free list, shared", "-", n, &|n| pool(n, true, 2));
    }
    for n in THREADS {
        row("buffer pool take+drop (echo)", "-", n, &|n| pool(n, true, 1));
    }
    for n in THREADS {
        row("socket table read lock", "-", n, &table);
    }
    for io in backends() {
        // io_uring's empty get is not a shared piece (each thread has a ring of its own), and a
        // zero timeout there still arms a timer and sleeps for the thread's timer slack (50 us by
        // default): the row would measure the kernel's timer, not the port.
        if io == Io::Epoll {
            for n in THREADS {
                row("empty get (timeout 0)", io.name(), n, &empty_get);
            }
        }
        for n in THREADS {
            row("user completion (N post, N get)", io.name(), n, &|n| user(io, n));
        }
        row("hand-off ping-pong (one way)", io.name(), 2, &|_| handoff(io));
    }
}

fn backends() -> Vec<Io> {
    #[cfg(target_os = "linux")]
    if let Err(why) = echoport::port::probe_uring() {
        println!("# io_uring skipped: {why}");
    } else {
        return vec![Io::Epoll, Io::Uring];
    }
    vec![Io::Epoll]
}

/// A port told it has `cores` cores: epoll keeps that many workers awake, io_uring makes that
/// many rings (one per consumer thread in these rows).
fn port(io: Io, cores: usize) -> Port {
    Port::with_io(io, BufferPool::new(BUFFER_SIZE, 1024), cores).expect("cannot make the port")
}

/// Buffer pool: `out` buffers borrowed, then given back. With one (an echo: epoll takes and drops
/// one per message) a thread gets back the buffer it dropped last, its spare, and never reaches
/// the shared free list; with two, each operation takes one from the free list and gives one back
/// to it. `shared: false` gives each thread a pool of its own: the same work without contention,
/// which shows how much parallelism the machine gave the row.
fn pool(n: usize, shared: bool, out: usize) -> f64 {
    let pools: Vec<BufferPool> = (0..if shared { 1 } else { n }).map(|_| BufferPool::new(BUFFER_SIZE, 1024)).collect();
    measure(n, |i, go| {
        let pool = &pools[i % pools.len()];
        let mut held = Vec::with_capacity(out);
        until(go(), || {
            held.extend((0..out).map(|_| pool.take()));
            black_box(&held);
            held.clear();
        })
    })
}

/// The socket table's lock taken for reading (epoll: once per reactor turn; io_uring: once per
/// reaped batch with receives). Its writers (associate, close) need sockets.
fn table(n: usize) -> f64 {
    let port = port(Io::Epoll, n);
    measure(n, |_, go| {
        until(go(), || {
            black_box(port.open_sockets());
        })
    })
}

/// epoll: a get that finds nothing takes the shared queue's lock and, when the reactor task is
/// free, runs one reactor turn (epoll_wait with a zero timeout): the turn's fixed cost, which only
/// one thread at a time can pay.
fn empty_get(n: usize) -> f64 {
    let port = port(Io::Epoll, n);
    measure(n, |_, go| {
        until(go(), || {
            let got = port.get(Some(Duration::ZERO));
            debug_assert!(matches!(got, Err(Wait::TimedOut)));
            black_box(got.is_ok());
        })
    })
}

/// User completions through the port's shared queue: threads 0..n post as fast as the backlog
/// allows until the deadline, threads n..2n take them. Counts what was taken.
fn user(io: Io, n: usize) -> f64 {
    let port = port(io, n);
    measure(2 * n, |i, go| {
        if i < n {
            let deadline = go();
            let mut posted = 0u64;
            while Instant::now() < deadline {
                if port.queue_depth() > BACKLOG {
                    std::thread::yield_now();
                    continue;
                }
                for _ in 0..BATCH {
                    port.post_user(posted);
                    posted += 1;
                }
            }
            // After this producer's last value: the queue is FIFO, so once every consumer has
            // taken a STOP, every value has been taken.
            port.post_user(STOP);
            0
        } else {
            let _ = port.get(Some(Duration::ZERO));
            go();
            let mut taken = 0;
            while let Ok(Completion::User(v)) = port.get(Some(STALL)) {
                if v == STOP {
                    break;
                }
                taken += 1;
            }
            taken
        }
    })
}

/// One value at a time between two threads, each waiting in get when the other posts: what
/// waking a blocked worker costs (epoll: a futex or the reactor's waker; io_uring: the ring's wake
/// pipe), the path a post to an idle ring takes. Counts one-way hand-offs.
fn handoff(io: Io) -> f64 {
    let (ping, pong) = (port(io, 1), port(io, 1));
    measure(2, |i, go| {
        let (mine, theirs) = if i == 0 { (&pong, &ping) } else { (&ping, &pong) };
        let _ = mine.get(Some(Duration::ZERO));
        let deadline = go();
        let mut hops = 0;
        if i == 0 {
            while Instant::now() < deadline {
                theirs.post_user(hops);
                if mine.get(Some(STALL)).is_err() {
                    break;
                }
                hops += 2;
            }
            theirs.post_user(STOP);
        } else {
            while let Ok(Completion::User(v)) = mine.get(Some(STALL)) {
                if v == STOP {
                    break;
                }
                theirs.post_user(v);
            }
        }
        hops
    })
}

/// Calls `op` in batches until `deadline`; returns how many calls.
fn until(deadline: Instant, mut op: impl FnMut()) -> u64 {
    let mut ops = 0;
    while Instant::now() < deadline {
        for _ in 0..BATCH {
            op();
        }
        ops += BATCH;
    }
    ops
}

/// Runs `work(i, go)` on threads `0..n` at once. Each calls `go` when warmed up; `go` waits for
/// all of them and returns the deadline. The rate is all operations over the time from the first
/// start to the last finish (a thread's exit, where a ring is torn down, is not counted).
fn measure(n: usize, work: impl Fn(usize, &dyn Fn() -> Instant) -> u64 + Sync) -> f64 {
    let barrier = Barrier::new(n);
    let spans: Vec<(u64, Instant, Instant)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (work, barrier) = (&work, &barrier);
                s.spawn(move || {
                    let start = Cell::new(None);
                    let go = || {
                        barrier.wait();
                        let now = Instant::now();
                        start.set(Some(now));
                        now + SLICE
                    };
                    let ops = work(i, &go);
                    (ops, start.get().expect("work never called go"), Instant::now())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("a bench thread panicked")).collect()
    });
    let ops: u64 = spans.iter().map(|s| s.0).sum();
    let first = spans.iter().map(|s| s.1).min().expect("at least one thread");
    let last = spans.iter().map(|s| s.2).max().expect("at least one thread");
    ops as f64 / (last - first).as_secs_f64()
}
