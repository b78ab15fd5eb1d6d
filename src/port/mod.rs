//! The completion port: an IOCP-style completion queue over mio.
//!
//! The API is the article's: [`associate`](CompletionPort::associate) a socket,
//! [`post_recv`](CompletionPort::post_recv) / [`post_send`](CompletionPort::post_send) operations,
//! and [`get`](CompletionPort::get) the next [`Completion`] from any number of worker threads.
//!
//! mio's `Poll::poll` takes `&mut self`, so only one thread can wait in epoll at a time. As in
//! Boost.Asio's scheduler, "run the reactor" is itself a task in the shared queue: whichever worker
//! pops it polls (without blocking when other work is queued), and the others take queued work.
//! The thread that sees readiness performs the syscalls and runs the completions itself, from a
//! thread-private queue that needs no lock, up to [`CHAIN_LIMIT`] in a row; only the overflow goes
//! through the shared queue. No more threads are kept awake than there are cores.

mod socket;

pub use socket::{Socket, shutting_down};

use crate::buffer::{Buf, BufferPool};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// How many completions a thread runs from its private queue before it shares the rest and
/// looks at the shared queue (the reactor, other sockets): bounds what one busy socket can delay.
pub const CHAIN_LIMIT: usize = 64;
/// How often a draining server calls [`CompletionPort::abort_quiet`]: a connection quiet for this
/// long has finished its exchange.
pub const QUIET_SWEEP: Duration = Duration::from_millis(100);
/// Readiness events taken from the OS per reactor turn.
const EVENTS_PER_TURN: usize = 256;
const WAKE_TOKEN: Token = Token(usize::MAX);

/// A finished operation, as `GetQueuedCompletionStatus` would report it.
#[derive(Debug)]
pub enum Completion {
    /// A posted receive finished: `Ok(buf)` holds the bytes read; an empty buffer means the peer
    /// shut down its sending side.
    Recv {
        socket: Arc<Socket>,
        result: io::Result<Buf>,
    },
    /// A posted send finished: every byte was written (`Ok` gives the buffer back), or it failed.
    Send {
        socket: Arc<Socket>,
        result: io::Result<Buf>,
    },
    /// A completion posted with [`CompletionPort::post_user`].
    User(u64),
}

/// Why [`CompletionPort::get`] returned without a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    TimedOut,
    /// The port was shut down: the worker should exit.
    Closed,
}

/// A handle to the port; clones share it.
#[derive(Clone)]
pub struct CompletionPort {
    shared: Arc<Shared>,
}

struct Shared {
    id: usize,
    queue: Mutex<Queue>,
    wakeup: Condvar,
    /// Only the thread running the reactor task touches this, so the lock is never contended.
    reactor: Mutex<(Poll, Events)>,
    registry: Registry,
    waker: Waker,
    sockets: RwLock<slab::Slab<Arc<Socket>>>,
    /// Signalled when the last open socket closes (for a draining shutdown).
    emptied: (Mutex<()>, Condvar),
    pool: BufferPool,
    max_awake: usize,
    /// Seconds since the port started, advanced by [`CompletionPort::tick`].
    clock: AtomicU32,
    started: Instant,
}

enum Task {
    /// Poll the OS for readiness.
    Reactor,
    /// A socket whose posted operation can now make progress.
    Ready(Arc<Socket>),
    Done(Completion),
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    /// Threads inside `get` (registered workers).
    threads: usize,
    /// Threads waiting on the condition variable.
    idle: usize,
    /// Notifications sent to idle threads that they have not consumed yet.
    wakeups: usize,
    /// A thread is (or is about to be) blocked in the OS poll.
    reactor_blocked: bool,
    /// The waker was already fired for the current blocking poll.
    interrupted: bool,
    closed: bool,
}

impl Queue {
    fn awake(&self) -> usize {
        self.threads - self.idle + self.wakeups
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local { port: 0, tasks: VecDeque::new(), chained: 0 }) };
}

/// A worker thread's private queue: completions it produced itself and will run next.
struct Local {
    /// The id of the port this thread works for (0: none).
    port: usize,
    tasks: VecDeque<Task>,
    chained: usize,
}

static NEXT_PORT_ID: AtomicUsize = AtomicUsize::new(1);

impl CompletionPort {
    /// A new port. `pool` supplies receive buffers; `max_awake` caps how many workers run at once
    /// (the core count is right: more only adds context switches).
    pub fn new(pool: BufferPool, max_awake: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
        let queue = Queue {
            tasks: VecDeque::from([Task::Reactor]),
            ..Queue::default()
        };
        Ok(CompletionPort {
            shared: Arc::new(Shared {
                id: NEXT_PORT_ID.fetch_add(1, Ordering::Relaxed),
                queue: Mutex::new(queue),
                wakeup: Condvar::new(),
                reactor: Mutex::new((poll, Events::with_capacity(EVENTS_PER_TURN))),
                registry,
                waker,
                sockets: RwLock::new(slab::Slab::new()),
                emptied: (Mutex::new(()), Condvar::new()),
                pool,
                max_awake: max_awake.max(1),
                clock: AtomicU32::new(0),
                started: Instant::now(),
            }),
        })
    }

    pub fn pool(&self) -> &BufferPool {
        &self.shared.pool
    }

    /// Associates a connected, non-blocking socket with the port. It is registered once, edge-
    /// triggered for both directions, so no `epoll_ctl` is needed per operation.
    pub fn associate(&self, mut stream: mio::net::TcpStream) -> io::Result<Arc<Socket>> {
        let s = &self.shared;
        let mut sockets = s.sockets.write().unwrap_or_else(|e| e.into_inner());
        let entry = sockets.vacant_entry();
        let key = entry.key();
        s.registry.register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let socket = Arc::new(Socket::new(key, stream, self.now()));
        entry.insert(socket.clone());
        Ok(socket)
    }

    /// Posts a receive. No buffer is held while waiting: one is borrowed from the pool when data
    /// arrives. At most one receive may be outstanding per socket.
    pub fn post_recv(&self, socket: &Arc<Socket>) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        st.post_recv();
        // Speculative: if the last read filled its buffer there is probably more waiting.
        let out = &mut |c| self.complete(c);
        st.perform(socket, &self.shared.pool, out);
    }

    /// Posts a send of all of `buf`'s bytes; it completes when the kernel has taken every one.
    /// At most one send may be outstanding per socket.
    pub fn post_send(&self, socket: &Arc<Socket>, buf: Buf) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        st.post_send(buf);
        let out = &mut |c| self.complete(c);
        st.perform(socket, &self.shared.pool, out);
    }

    /// Posts a completion that [`get`](Self::get) returns as [`Completion::User`].
    pub fn post_user(&self, value: u64) {
        self.push_shared(vec![Task::Done(Completion::User(value))]);
    }

    /// Closes the socket: posted operations are dropped without completing.
    pub fn close(&self, socket: &Socket) {
        let stream = socket.lock().close();
        if let Some(mut stream) = stream {
            let _ = self.shared.registry.deregister(&mut stream);
            drop(stream);
            let mut sockets = self
                .shared
                .sockets
                .write()
                .unwrap_or_else(|e| e.into_inner());
            sockets.try_remove(socket.key());
            if sockets.is_empty() {
                drop(sockets);
                let _guard = self.shared.emptied.0.lock();
                self.shared.emptied.1.notify_all();
            }
        }
    }

    /// Closes every open socket.
    pub fn close_all(&self) {
        for socket in self.each_socket(|s| Some(s.clone())) {
            self.close(&socket);
        }
    }

    /// Waits until no socket is open, or `deadline`. True when none is open.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let (lock, cond) = &self.shared.emptied;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.open_sockets() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = cond
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Open (associated, not yet closed) sockets.
    pub fn open_sockets(&self) -> usize {
        self.shared
            .sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Waits for the next completion, running the reactor when it is this thread's turn.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion, Wait> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.enter();
        loop {
            let task = match self.pop_local() {
                Some(task) => task,
                None => self.pop_shared(deadline)?,
            };
            match task {
                Task::Done(c) => return Ok(c),
                Task::Ready(socket) => self.run_ready(&socket),
                Task::Reactor => unreachable!("the reactor task is run by pop_shared"),
            }
        }
    }

    /// Makes every waiting and future `get` return [`Wait::Closed`].
    pub fn shutdown(&self) {
        let mut q = self.lock_queue();
        q.closed = true;
        drop(q);
        self.shared.wakeup.notify_all();
        let _ = self.shared.waker.wake();
    }

    /// For a graceful shutdown, call every [`QUIET_SWEEP`]: fails with [`shutting_down`] the
    /// receive of every socket that has waited with nothing to read since the previous call (so
    /// it owes its peer nothing). A stream still arriving is never cut off on a momentarily empty
    /// queue. Returns how many were ended.
    pub fn abort_quiet(&self) -> usize {
        let tasks = self.each_socket(|socket| socket.lock().abort_if_quiet(socket).map(Task::Done));
        let n = tasks.len();
        self.push_shared(tasks);
        n
    }

    /// Advances the port clock; call about once a second.
    pub fn tick(&self) {
        let secs = self.shared.started.elapsed().as_secs().min(u32::MAX as u64) as u32;
        self.shared.clock.store(secs, Ordering::Relaxed);
    }

    /// Fails the posted operation of every socket idle for at least `idle` with `TimedOut`.
    /// Returns how many were expired.
    pub fn expire_idle(&self, idle: Duration) -> usize {
        let now = self.now();
        let limit = idle.as_secs().max(1).min(u32::MAX as u64) as u32;
        let tasks = self.each_socket(|socket| {
            if now.saturating_sub(socket.idle_since()) < limit {
                return None;
            }
            socket
                .lock()
                .abort(socket, io::ErrorKind::TimedOut)
                .map(Task::Done)
        });
        let n = tasks.len();
        self.push_shared(tasks);
        n
    }

    fn each_socket<T>(&self, f: impl FnMut(&Arc<Socket>) -> Option<T>) -> Vec<T> {
        let sockets: Vec<Arc<Socket>> = self
            .shared
            .sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        sockets.iter().filter_map(f).collect()
    }

    fn now(&self) -> u32 {
        self.shared.clock.load(Ordering::Relaxed)
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the calling thread as a worker of this port (once).
    fn enter(&self) {
        let id = self.shared.id;
        let first = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let first = l.port != id;
            if first {
                l.port = id;
                l.tasks.clear();
            }
            first
        });
        if first {
            self.lock_queue().threads += 1;
        }
    }

    /// Runs a ready socket's I/O on this thread.
    fn run_ready(&self, socket: &Arc<Socket>) {
        let mut st = socket.lock();
        st.queued = false;
        let out = &mut |c| self.complete(c);
        st.perform(socket, &self.shared.pool, out);
    }

    /// Delivers a finished operation: to this thread's private queue when it is one of our
    /// workers (it runs it next, no lock, no wake-up), otherwise through the shared queue.
    fn complete(&self, c: Completion) {
        match &c {
            Completion::Recv { socket, .. } | Completion::Send { socket, .. } => {
                socket.touch(self.now())
            }
            Completion::User(_) => {}
        }
        let id = self.shared.id;
        let task = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            if l.port == id {
                l.tasks.push_back(Task::Done(c));
                None
            } else {
                Some(Task::Done(c))
            }
        });
        if let Some(task) = task {
            self.push_shared(vec![task]);
        }
    }

    fn pop_local(&self) -> Option<Task> {
        let id = self.shared.id;
        let overflow = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            debug_assert_eq!(l.port, id);
            if l.tasks.is_empty() {
                l.chained = 0;
                return Ok(None);
            }
            if l.chained < CHAIN_LIMIT {
                l.chained += 1;
                return Ok(l.tasks.pop_front());
            }
            // Chained long enough: share the rest and give the shared queue (reactor included) a turn.
            l.chained = 0;
            Err(std::mem::take(&mut l.tasks))
        });
        match overflow {
            Ok(task) => task,
            Err(tasks) => {
                self.push_shared(tasks);
                None
            }
        }
    }

    fn push_shared(&self, tasks: impl IntoIterator<Item = Task>) {
        let mut q = self.lock_queue();
        let before = q.tasks.len();
        q.tasks.extend(tasks);
        let added = q.tasks.len() - before;
        for _ in 0..added {
            if !self.wake_one(&mut q) {
                break;
            }
        }
    }

    /// Wakes an idle worker if the awake cap allows; otherwise makes sure a thread blocked in the
    /// OS poll comes back to look at the queue. Returns false when nothing more can be woken.
    fn wake_one(&self, q: &mut Queue) -> bool {
        if q.idle > q.wakeups && q.awake() < self.shared.max_awake {
            q.wakeups += 1;
            self.shared.wakeup.notify_one();
            return true;
        }
        if q.reactor_blocked && !q.interrupted {
            q.interrupted = true;
            let _ = self.shared.waker.wake();
        }
        false
    }

    /// Takes the next shared task, running the reactor when its turn comes and waiting when
    /// there is nothing to do.
    fn pop_shared(&self, deadline: Option<Instant>) -> Result<Task, Wait> {
        let mut q = self.lock_queue();
        loop {
            if q.closed {
                q.threads -= 1;
                return Err(Wait::Closed);
            }
            match q.tasks.pop_front() {
                Some(Task::Reactor) => {
                    drop(self.run_reactor(q, deadline));
                    if let Some(task) = self.pop_local() {
                        return Ok(task);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Wait::TimedOut);
                    }
                    q = self.lock_queue();
                }
                Some(task) => {
                    // More queued work and spare cores: let another thread help.
                    if !q.tasks.is_empty() {
                        self.wake_one(&mut q);
                    }
                    return Ok(task);
                }
                None => {
                    q.idle += 1;
                    q = match deadline {
                        None => self
                            .shared
                            .wakeup
                            .wait(q)
                            .unwrap_or_else(|e| e.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            self.shared
                                .wakeup
                                .wait_timeout(q, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                    q.idle -= 1;
                    if q.wakeups > 0 {
                        q.wakeups -= 1;
                    } else if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Wait::TimedOut);
                    }
                }
            }
        }
    }

    /// One turn at the OS poll. Ready sockets go to this thread's private queue (it performs
    /// their I/O next) up to the chain limit; the rest are shared. Returns with the queue locked
    /// and the reactor task back in it.
    fn run_reactor<'a>(
        &'a self,
        mut q: MutexGuard<'a, Queue>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Queue> {
        let more = !q.tasks.is_empty();
        let timeout = if more || q.closed {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        q.reactor_blocked = timeout != Some(Duration::ZERO);
        q.interrupted = false;
        drop(q);

        let mut ready = Vec::new();
        {
            let mut reactor = self
                .shared
                .reactor
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (poll, events) = &mut *reactor;
            if let Err(e) = poll.poll(events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed");
                }
            }
            let sockets = self
                .shared
                .sockets
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for ev in events.iter() {
                let Some(socket) = sockets.get(ev.token().0) else {
                    continue;
                };
                let read_closed = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || read_closed;
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                if socket.lock().on_event(readable, writable, read_closed) {
                    ready.push(Task::Ready(socket.clone()));
                }
            }
        }

        let shared = if ready.len() > CHAIN_LIMIT {
            ready.split_off(CHAIN_LIMIT)
        } else {
            Vec::new()
        };
        let kept = ready.len();
        if kept > 0 {
            let id = self.shared.id;
            LOCAL.with(|l| {
                let mut l = l.borrow_mut();
                debug_assert_eq!(l.port, id);
                l.tasks.extend(ready);
            });
        }
        let mut q = self.lock_queue();
        q.reactor_blocked = false;
        q.tasks.push_back(Task::Reactor);
        let n = shared.len();
        q.tasks.extend(shared);
        // While this thread works through its batch, another should take the reactor (and the
        // overflow). A single event is done so quickly that the hand-over would cost more.
        let wanted = n + usize::from(kept > 1);
        for _ in 0..wanted {
            if !self.wake_one(&mut q) {
                break;
            }
        }
        q
    }
}
