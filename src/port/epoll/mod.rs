//! The readiness backend: mio (epoll on Linux, IOCP/AFD polling on Windows) turned into
//! completions. A posted operation waits in its socket's state ([`io`]) until the reactor has seen
//! the socket ready; whichever worker runs the reactor turn performs the syscalls. How the workers
//! share the one OS poller is in [`scheduler`].

mod io;
mod scheduler;

pub use scheduler::CHAIN_LIMIT;

use super::payload::Payload;
use super::{CompletionPort, OpError, Socket};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use scheduler::{Queue, Task};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Readiness events taken from the OS per reactor turn.
const EVENTS_PER_TURN: usize = 256;
const WAKE_TOKEN: Token = Token(usize::MAX);

pub(super) struct Epoll<C> {
    queue: Mutex<Queue<C>>,
    wakeup: Condvar,
    /// Only the thread running the reactor task touches this, so the lock is never contended.
    reactor: Mutex<(Poll, Events)>,
    registry: Registry,
    waker: Waker,
    max_awake: usize,
}

impl<C: Send + Sync + 'static> Epoll<C> {
    /// `max_awake` caps how many workers run at once (the core count is right: more only adds
    /// context switches).
    pub(super) fn new(max_awake: usize) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
        Ok(Epoll {
            queue: Mutex::new(Queue::new()),
            wakeup: Condvar::new(),
            reactor: Mutex::new((poll, Events::with_capacity(EVENTS_PER_TURN))),
            registry,
            waker,
            max_awake: max_awake.max(1),
        })
    }

    /// Registers a new socket once, edge-triggered for both directions, so no `epoll_ctl` is
    /// needed per operation.
    pub(super) fn register(&self, stream: &mut TcpStream, token: usize) -> std::io::Result<()> {
        self.registry.register(stream, Token(token), Interest::READABLE | Interest::WRITABLE)
    }

    pub(super) fn deregister(&self, stream: &mut TcpStream) {
        let _ = self.registry.deregister(stream);
    }

    pub(super) fn post_recv(&self, port: &CompletionPort<C>, socket: &Arc<Socket<C>>) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        st.post_recv();
        // Speculative: if the last read filled its buffer there is probably more waiting.
        st.perform(socket, port.pool(), port.now(), &mut |c| self.complete(port, c));
    }

    pub(super) fn post_send(&self, port: &CompletionPort<C>, socket: &Arc<Socket<C>>, payload: Payload) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        let mut out = |c| self.complete(port, c);
        st.post_send(socket, payload, port.now(), &mut out);
        // A receive posted meanwhile may be able to progress too.
        st.perform(socket, port.pool(), port.now(), &mut out);
    }

    /// See [`CompletionPort::abort_quiet`].
    pub(super) fn abort_quiet(&self, port: &CompletionPort<C>) -> usize {
        let tasks = port.each_socket(|socket| socket.lock().abort_if_quiet(socket).map(Task::Done));
        let n = tasks.len();
        self.push_shared(tasks);
        n
    }

    /// See [`CompletionPort::expire_idle`].
    pub(super) fn expire_idle(&self, port: &CompletionPort<C>, idle: Duration) -> usize {
        let tasks =
            port.each_idle_socket(idle, |socket| socket.lock().abort(socket, OpError::IdleTimeout).map(Task::Done));
        let n = tasks.len();
        self.push_shared(tasks);
        n
    }
}
