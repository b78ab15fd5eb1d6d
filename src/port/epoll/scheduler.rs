//! How many threads share one OS poller: Boost.Asio's scheduler, over mio.
//!
//! mio's `Poll::poll` takes `&mut self`, so only one thread can wait in epoll at a time. "Run the
//! reactor" is therefore a task in the shared queue: whichever worker pops it polls (without
//! blocking when other work is queued) while the others take queued work. The thread that sees
//! readiness performs the syscalls and runs the completions itself, from a thread-private queue
//! that needs no lock, up to [`CHAIN_LIMIT`] in a row; only the overflow goes through the shared
//! queue. No more threads are kept awake (the one blocked in epoll included) than `max_awake`.

use super::Epoll;
use crate::port::{Backend, Completion, CompletionPort, Shared, Socket, Wait};
use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// How many tasks a thread runs from its private queue before it shares the rest and looks at
/// the shared queue (the reactor, other sockets): bounds what one busy socket can delay.
pub const CHAIN_LIMIT: usize = 64;

pub(super) enum Task<C> {
    /// Poll the OS for readiness.
    Reactor,
    /// A socket whose posted operation can now make progress.
    Ready(Arc<Socket<C>>),
    Done(Completion<C>),
}

pub(super) struct Queue<C> {
    tasks: VecDeque<Task<C>>,
    /// Threads that are workers of this port (see [`Local`]).
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

impl<C> Queue<C> {
    pub(super) fn new() -> Self {
        Queue {
            tasks: VecDeque::from([Task::Reactor]),
            threads: 0,
            idle: 0,
            wakeups: 0,
            reactor_blocked: false,
            interrupted: false,
            closed: false,
        }
    }

    fn awake(&self) -> usize {
        self.threads - self.idle + self.wakeups
    }
}

thread_local! {
    /// The private queue of the port this thread works for, if any. A `thread_local` cannot be
    /// generic, so it holds the queue type-erased; [`with_local`] gives it back typed.
    static LOCAL: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// A worker thread's private queue: completions it produced itself and will run next. A thread
/// is a worker of a port from a `get` that returns a completion until a `get` that returns none,
/// so a completion posted from any other thread (or time) goes through the shared queue.
struct Local<C> {
    port: Arc<Shared<C>>,
    tasks: VecDeque<Task<C>>,
    chained: usize,
}

/// A [`Local`] of some port's type, and how to give its tasks back to that port.
struct Worker {
    local: Box<dyn Any>,
    hand_back: fn(Box<dyn Any>),
}

impl<C: Send + Sync + 'static> Local<C> {
    fn worker(port: &Arc<Shared<C>>) -> Worker {
        let local = Local { port: port.clone(), tasks: VecDeque::new(), chained: 0 };
        Worker { local: Box::new(local), hand_back: Self::hand_back }
    }

    /// Gives the queued tasks back to their port's shared queue and stops being its worker.
    fn hand_back(local: Box<dyn Any>) {
        if let Ok(local) = local.downcast::<Self>()
            && let Backend::Epoll(epoll) = &local.port.backend
        {
            epoll.lock_queue().threads -= 1;
            epoll.push_shared(local.tasks);
        }
    }
}

/// Runs `f` with this thread's private queue if it is one of `shared`'s workers, else with `None`.
fn with_local<C: Send + Sync + 'static, T>(shared: &Arc<Shared<C>>, f: impl FnOnce(Option<&mut Local<C>>) -> T) -> T {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let local = l.as_mut().and_then(|w| w.local.downcast_mut::<Local<C>>());
        f(local.filter(|local| Arc::ptr_eq(&local.port, shared)))
    })
}

impl<C: Send + Sync + 'static> Epoll<C> {
    /// Waits for the next completion, running the reactor when it is this thread's turn.
    pub(in crate::port) fn get(
        &self,
        port: &CompletionPort<C>,
        timeout: Option<Duration>,
    ) -> Result<Completion<C>, Wait> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.enter(port);
        loop {
            let task = match self.pop_local(port) {
                Some(task) => task,
                None => match self.pop_shared(port, deadline) {
                    Ok(task) => task,
                    Err(wait) => {
                        Self::leave();
                        return Err(wait);
                    }
                },
            };
            match task {
                Task::Done(c) => return Ok(c),
                Task::Ready(socket) => self.run_ready(port, &socket),
                Task::Reactor => unreachable!("the reactor task is run by pop_shared"),
            }
        }
    }

    /// The calling worker is about to spend long in one handler (a password hash): the sockets
    /// in its private queue go to the shared one, and threads are woken for them and for the
    /// reactor's turn (a turn that found one event wakes nobody: see `run_reactor`), so no other
    /// client waits behind the slow one.
    pub(in crate::port) fn blocking(&self, port: &CompletionPort<C>) {
        let mine: Vec<Task<C>> =
            with_local(&port.shared, |l| l.map(|l| l.tasks.drain(..).collect()).unwrap_or_default());
        let mut q = self.lock_queue();
        let n = mine.len();
        q.tasks.extend(mine);
        let reactor_waiting = q.tasks.iter().any(|t| matches!(t, Task::Reactor));
        self.wake(&mut q, n + usize::from(reactor_waiting));
    }

    /// Tasks waiting in the shared queue (the reactor's turn included): a backlog metric.
    pub(in crate::port) fn queue_depth(&self) -> usize {
        self.lock_queue().tasks.len()
    }

    /// Makes every waiting and future `get` return [`Wait::Closed`].
    pub(in crate::port) fn shutdown(&self) {
        self.lock_queue().closed = true;
        self.wakeup.notify_all();
        let _ = self.waker.wake();
    }

    /// Posts a completion that `get` returns as [`Completion::User`].
    pub(in crate::port) fn post_user(&self, value: u64) {
        self.push_shared([Task::Done(Completion::User(value))]);
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue<C>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the calling thread a worker of this port. A thread that worked for another port
    /// hands that port's private tasks back to it first.
    fn enter(&self, port: &CompletionPort<C>) {
        if with_local(&port.shared, |l| l.is_some()) {
            return;
        }
        let previous = LOCAL.with(|l| l.borrow_mut().replace(Local::worker(&port.shared)));
        // Outside the borrow: handing back takes the other port's queue lock.
        if let Some(previous) = previous {
            (previous.hand_back)(previous.local);
        }
        self.lock_queue().threads += 1;
    }

    /// The calling thread stops being a worker (its private queue is empty here).
    fn leave() {
        let mine = LOCAL.with(|l| l.borrow_mut().take());
        if let Some(mine) = mine {
            (mine.hand_back)(mine.local);
        }
    }

    /// Runs a ready socket's I/O on this thread, and queues what finished to run next, ahead of
    /// the other ready sockets: a received buffer is handled (echoed, and back in the pool) before
    /// the next socket's read borrows one, so a thread has about one buffer in flight instead of
    /// one per ready socket in its batch. The chain limit still bounds how long it stays on them.
    fn run_ready(&self, port: &CompletionPort<C>, socket: &Arc<Socket<C>>) {
        // A send and a receive at most, in that order.
        let (mut first, mut second) = (None, None);
        {
            let mut st = socket.lock();
            st.set_queued(false);
            st.perform(socket, port.pool(), port.now(), &mut |c| match first {
                None => first = Some(Task::Done(c)),
                Some(_) => second = Some(Task::Done(c)),
            });
        }
        with_local(&port.shared, |l| match l {
            Some(l) => {
                if let Some(t) = second {
                    l.tasks.push_front(t);
                }
                if let Some(t) = first {
                    l.tasks.push_front(t);
                }
            }
            None => self.push_shared(first.into_iter().chain(second)),
        });
    }

    /// Delivers a finished operation: to this thread's private queue when it is one of our
    /// workers (it runs it next, no lock, no wake-up), otherwise through the shared queue.
    pub(in crate::port) fn complete(&self, port: &CompletionPort<C>, c: Completion<C>) {
        with_local(&port.shared, |l| match l {
            Some(l) => l.tasks.push_back(Task::Done(c)),
            None => self.push_shared([Task::Done(c)]),
        });
    }

    fn pop_local(&self, port: &CompletionPort<C>) -> Option<Task<C>> {
        let overflow = with_local(&port.shared, |l| {
            let l = l?;
            if l.tasks.is_empty() {
                l.chained = 0;
                return Some(Ok(None));
            }
            if l.chained < CHAIN_LIMIT {
                l.chained += 1;
                return Some(Ok(l.tasks.pop_front()));
            }
            // Chained long enough: share the rest, give the shared queue (reactor included) a turn.
            l.chained = 0;
            Some(Err(l.tasks.drain(..).collect::<Vec<_>>()))
        });
        match overflow? {
            Ok(task) => task,
            Err(tasks) => {
                self.push_shared(tasks);
                None
            }
        }
    }

    pub(super) fn push_shared(&self, tasks: impl IntoIterator<Item = Task<C>>) {
        let mut q = self.lock_queue();
        let before = q.tasks.len();
        q.tasks.extend(tasks);
        let added = q.tasks.len() - before;
        self.wake(&mut q, added);
    }

    /// Wakes up to `n` idle workers, as the awake cap allows; if that is not enough, makes sure a
    /// thread blocked in the OS poll comes back to look at the queue.
    fn wake(&self, q: &mut Queue<C>, n: usize) {
        for _ in 0..n {
            if q.idle > q.wakeups && q.awake() < self.max_awake {
                q.wakeups += 1;
                self.wakeup.notify_one();
            } else {
                if q.reactor_blocked && !q.interrupted {
                    q.interrupted = true;
                    let _ = self.waker.wake();
                }
                return;
            }
        }
    }

    /// Takes the next shared task, running the reactor when its turn comes and waiting when
    /// there is nothing to do.
    fn pop_shared(&self, port: &CompletionPort<C>, deadline: Option<Instant>) -> Result<Task<C>, Wait> {
        let mut q = self.lock_queue();
        loop {
            if q.closed {
                return Err(Wait::Closed);
            }
            match q.tasks.pop_front() {
                Some(Task::Reactor) => {
                    self.run_reactor(port, q, deadline);
                    if let Some(task) = self.pop_local(port) {
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
                        self.wake(&mut q, 1);
                    }
                    return Ok(task);
                }
                None => {
                    q.idle += 1;
                    let wakeup = &self.wakeup;
                    q = match deadline {
                        None => wakeup.wait(q).unwrap_or_else(|e| e.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            wakeup.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0
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

    /// One turn at the OS poll, entered with the reactor task just popped. Ready sockets go to
    /// this thread's private queue (it performs their I/O next) up to the chain limit; the rest
    /// are shared, and the reactor task goes back in the queue.
    ///
    /// The turn touches every ready socket in one loop (`on_event`, under its lock) though the
    /// I/O comes later: the sockets' cache lines are cold (the kernel work of a round trip
    /// evicts them), and a loop of independent loads fetches them in parallel. Deferring the
    /// first touch to the socket's own task made each a miss of its own: with the events copied
    /// out and recorded when run, the user time per round trip at 64 B x 500 was 1.05-1.18x
    /// (paired runs), for no gain in the total.
    fn run_reactor(&self, port: &CompletionPort<C>, mut q: MutexGuard<'_, Queue<C>>, deadline: Option<Instant>) {
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
            let mut reactor = self.reactor.lock().unwrap_or_else(|e| e.into_inner());
            let (poll, events) = &mut *reactor;
            if let Err(e) = poll.poll(events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed");
                }
            }
            let sockets = port.sockets();
            for ev in events.iter() {
                let Some(socket) = CompletionPort::socket_for(&sockets, ev.token().0) else {
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

        let mut shared = ready.split_off(ready.len().min(CHAIN_LIMIT));
        let kept = ready.len();
        // The reactor turn is taken inside `get`, by a worker of this port: the batch goes to its
        // private queue (the shared queue only if that ever failed to hold).
        with_local(&port.shared, |l| match l {
            Some(l) => l.tasks.extend(ready),
            None => shared.extend(ready),
        });
        let mut q = self.lock_queue();
        q.reactor_blocked = false;
        q.tasks.push_back(Task::Reactor);
        let n = shared.len();
        q.tasks.extend(shared);
        // While this thread works through its batch, another should take the reactor (and the
        // overflow). A single event is done so quickly that the hand-over would cost more.
        self.wake(&mut q, n + usize::from(kept > 1));
    }
}
