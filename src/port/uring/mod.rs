//! The completion backend: Linux's own completion queue, io_uring, behind the same port.
//!
//! **Rings.** One ring per core, made (disabled) with the port so that its descriptors are held
//! before the acceptor can use up the open-file limit. A ring is submitted to and reaped by one
//! thread only, the worker that first took it in [`get`](CompletionPort::get) and enabled it (its
//! owner): that is what lets the kernel run a ring's completion work inside the owner's own
//! `io_uring_enter` (`SINGLE_ISSUER` + `DEFER_TASKRUN`, the big lever), instead of in interrupts
//! and task-work wake-ups. A socket is given to one ring when it is associated, round robin, for
//! its whole life. Workers beyond the ring count only take
//! [`post_user`](CompletionPort::post_user) completions.
//!
//! **Posting.** The owner pushes a socket's operations straight into its ring. Any other thread
//! (the acceptor posting a first receive, a chat broadcast to a client of another ring, the
//! housekeeper) puts them in the ring's inbox and wakes the owner if it sleeps, through a pipe the
//! ring keeps a read posted on.
//!
//! **Receives.** A socket's receive is one multishot receive, armed at its first post and left
//! armed: arming (an entry, a poll registration and its removal) is paid once per connection, not
//! once a round trip. What it brings completes the posted receive; what it brings while none is
//! posted (the handler is still busy with the last) is parked in the ring for the next posts. One
//! such result is routine under load; a second stops the multishot until the next post, so the
//! kernel reads little further ahead than a receive re-armed after each send would, and TCP flow
//! control still pushes back on a client that is not being served.
//!
//! **Buffers.** A receive names no buffer: the kernel picks one from the ring's provided-buffer
//! block when data arrives (so an idle connection holds none, the IOCP zero-byte receive), and the
//! completion hands it over. When every buffer is out, the posted receive is made again with a
//! buffer of the ordinary pool, so a crowd of clients that stopped reading cannot starve the others.
//!
//! **Files.** Each ring has a file table; a socket's descriptor is put in it, at the socket's
//! table index, before its first operation, and entries name the slot: the kernel then skips the
//! descriptor lookup and its reference count on every operation.
//!
//! **Closing.** A pending receive holds its own reference to the socket in the kernel, so closing
//! the descriptor would not end it: `close` shuts the socket down (pending operations complete at
//! once), and the descriptor and the slot are let go by the owner after its next submission, so
//! neither can be reused under an operation still waiting in the submission queue.

mod bufring;
mod probe;
mod ring;

pub use probe::probe;

use super::payload::Payload;
pub(super) use super::socket::Abort;
use super::{Completion, CompletionPort, Socket, Wait};
use crate::buffer::BufferPool;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{PipeWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Buffers in each ring's provided block. More than this in use at once (clients whose echo is
/// still being sent) and receives fall back to the ordinary pool.
const PROVIDED_PER_RING: u16 = 512;

/// What another thread asks of a ring's owner.
enum Request<C> {
    Recv(Arc<Socket<C>>),
    Send(Arc<Socket<C>>, Payload),
    /// Fail the socket's pending operation (idle timeout, drain).
    Cancel(Arc<Socket<C>>, Abort),
    /// A closed socket's descriptor and file-table slot, to let go of once nothing queued can
    /// refer to them.
    Close(TcpStream, Option<u32>),
}

pub(super) struct Uring<C> {
    rings: Box<[Slot<C>]>,
    /// Round robin over the rings for new sockets.
    next: AtomicUsize,
    pool: BufferPool,
    /// `post_user` completions, for whichever worker looks first.
    user: Mutex<UserQueue>,
    user_len: AtomicUsize,
    /// Workers without a ring wait here.
    user_ready: Condvar,
    closed: AtomicBool,
}

struct UserQueue {
    values: VecDeque<u64>,
    /// Workers without a ring waiting on `user_ready`.
    waiting: usize,
}

/// The part of a ring other threads may touch.
struct Slot<C> {
    /// A worker owns this ring (set once, for the port's life).
    taken: AtomicBool,
    inbox: Mutex<Vec<Request<C>>>,
    inbox_len: AtomicUsize,
    /// The owner is about to block, or is blocked, in `io_uring_enter`: write to `wake` to end it.
    sleeping: AtomicBool,
    wake: PipeWriter,
    /// The ring, until a worker takes and starts it.
    unstarted: Mutex<Option<ring::Unstarted>>,
}

impl<C: Send + Sync + 'static> Uring<C> {
    /// A backend of `rings` rings (at least one), made now and started by the worker that takes
    /// each; [`probe()`] tells beforehand whether that can work here.
    pub(super) fn new(rings: usize, pool: BufferPool) -> std::io::Result<Self> {
        let rings = (0..rings.max(1))
            .map(|_| {
                let (unstarted, wake) = ring::Unstarted::new()?;
                Ok(Slot {
                    taken: AtomicBool::new(false),
                    inbox: Mutex::new(Vec::new()),
                    inbox_len: AtomicUsize::new(0),
                    sleeping: AtomicBool::new(false),
                    wake,
                    unstarted: Mutex::new(Some(unstarted)),
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Uring {
            rings,
            next: AtomicUsize::new(0),
            pool,
            user: Mutex::new(UserQueue { values: VecDeque::new(), waiting: 0 }),
            user_len: AtomicUsize::new(0),
            user_ready: Condvar::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The ring a new socket belongs to.
    pub(super) fn assign(&self) -> u16 {
        (self.next.fetch_add(1, Ordering::Relaxed) % self.rings.len()) as u16
    }

    pub(super) fn get(&self, port: &CompletionPort<C>, timeout: Option<Duration>) -> Result<Completion<C>, Wait> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let owned = |port| ring::with_owned(port, |ring| ring.map(|r| r.get(self, port, deadline)));
        let result = match owned(port) {
            Some(result) => result,
            None => match self.take_ring(port) {
                Some(Ok(())) => owned(port).unwrap_or(Err(Wait::Closed)),
                Some(Err(wait)) => Err(wait),
                None => return self.wait_user(deadline),
            },
        };
        if result.as_ref().is_err_and(|w| *w == Wait::Closed) {
            // The port is closed for good: give the kernel's resources back now, on this thread.
            ring::release(port);
        }
        result
    }

    /// Makes the calling thread the owner of a ring nobody owns yet, if there is one.
    fn take_ring(&self, port: &CompletionPort<C>) -> Option<Result<(), Wait>> {
        let slot = self.rings.iter().position(|s| !s.taken.swap(true, Ordering::AcqRel))?;
        let unstarted = self.rings[slot].unstarted.lock().unwrap_or_else(|e| e.into_inner()).take();
        let made = unstarted
            .ok_or_else(|| std::io::Error::other("ring taken twice"))
            .and_then(|u| ring::Ring::start(port, slot, u, PROVIDED_PER_RING, self.pool.buffer_size()));
        match made {
            Ok(()) => Some(Ok(())),
            Err(e) => {
                // The probe ran at start-up, so this is the kernel refusing resources now.
                tracing::error!(error = %e, ring = slot, "cannot start an io_uring ring; its sockets stall");
                Some(Err(Wait::Closed))
            }
        }
    }

    /// A worker without a ring: waits for a user completion.
    fn wait_user(&self, deadline: Option<Instant>) -> Result<Completion<C>, Wait> {
        let mut q = self.lock_user();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Wait::Closed);
            }
            if let Some(v) = q.values.pop_front() {
                self.user_len.fetch_sub(1, Ordering::Relaxed);
                return Ok(Completion::User(v));
            }
            q.waiting += 1;
            q = match deadline {
                None => self.user_ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        q.waiting -= 1;
                        return Err(Wait::TimedOut);
                    }
                    self.user_ready.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            q.waiting -= 1;
        }
    }

    /// A user completion for a ring's owner to take, if any.
    fn pop_user(&self) -> Option<u64> {
        if self.user_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let v = self.lock_user().values.pop_front();
        if v.is_some() {
            self.user_len.fetch_sub(1, Ordering::Relaxed);
        }
        v
    }

    pub(super) fn post_user(&self, value: u64) {
        let mut q = self.lock_user();
        q.values.push_back(value);
        self.user_len.fetch_add(1, Ordering::Relaxed);
        if q.waiting > 0 {
            self.user_ready.notify_one();
            return;
        }
        drop(q);
        // No spare worker waits: the first sleeping owner takes it.
        if let Some(slot) = self.rings.iter().find(|s| s.sleeping.load(Ordering::SeqCst)) {
            self.wake(slot);
        }
    }

    /// See [`CompletionPort::defer_user`]: a ring's owner queues it behind what it has reaped.
    pub(super) fn defer_user(&self, port: &CompletionPort<C>, value: u64) {
        let deferred = ring::with_owned(port, |r| r.map(|r| r.defer(Completion::User(value))).is_some());
        if !deferred {
            self.post_user(value);
        }
    }

    pub(super) fn post_recv(&self, port: &CompletionPort<C>, socket: &Arc<Socket<C>>) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        st.post_recv();
        let ring = st.ring;
        // The owner posts straight into its ring, under the one lock this post takes.
        let local = ring::with_owned(port, |r| match r {
            Some(r) if r.slot() == usize::from(ring) => {
                r.recv_locked(socket, &mut st);
                true
            }
            _ => false,
        });
        drop(st);
        if !local {
            self.request(ring, Request::Recv(socket.clone()));
        }
    }

    pub(super) fn post_send(&self, port: &CompletionPort<C>, socket: &Arc<Socket<C>>, payload: Payload) {
        let mut st = socket.lock();
        if st.is_closed() {
            return;
        }
        st.set_send_posted(true);
        let ring = st.ring;
        let mut payload = Some(payload);
        ring::with_owned(port, |r| {
            if let Some(r) = r.filter(|r| r.slot() == usize::from(ring)) {
                r.send_locked(socket, &mut st, payload.take().expect("payload present"));
            }
        });
        drop(st);
        if let Some(payload) = payload {
            self.request(ring, Request::Send(socket.clone(), payload));
        }
    }

    /// Closes a socket's descriptor the safe way (see the module docs).
    pub(super) fn close(&self, stream: TcpStream, socket: &Socket<C>) {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let (ring, slot) = {
            let st = socket.lock();
            (st.ring, ring::fixed_slot(socket, &st))
        };
        self.request(ring, Request::Close(stream, slot));
    }

    /// See [`CompletionPort::abort_quiet`].
    pub(super) fn abort_quiet(&self, port: &CompletionPort<C>) -> usize {
        let quiet = port.each_socket(|socket| {
            let mut st = socket.lock();
            let waiting = st.recv_posted() && !st.send_posted() && !st.is_closed() && st.cancel.is_none();
            if !waiting {
                st.set_quiet(false);
                return None;
            }
            if !st.replace_quiet() {
                return None;
            }
            // Data the owner has not reaped yet may already be in the socket: never cut off a
            // stream that is still arriving.
            if st.stream.as_ref().is_some_and(has_data) {
                st.set_quiet(false);
                return None;
            }
            st.cancel = Some(Abort::Shutdown);
            Some((socket.clone(), st.ring))
        });
        let n = quiet.len();
        for (socket, ring) in quiet {
            self.request(ring, Request::Cancel(socket, Abort::Shutdown));
        }
        n
    }

    /// See [`CompletionPort::expire_idle`].
    pub(super) fn expire_idle(&self, port: &CompletionPort<C>, idle: Duration) -> usize {
        let idle = port.each_idle_socket(idle, |socket| {
            let mut st = socket.lock();
            let pending = st.recv_posted() || st.send_posted();
            (pending && !st.is_closed() && st.cancel.is_none()).then(|| {
                st.cancel = Some(Abort::IdleTimeout);
                (socket.clone(), st.ring)
            })
        });
        let n = idle.len();
        for (socket, ring) in idle {
            self.request(ring, Request::Cancel(socket, Abort::IdleTimeout));
        }
        n
    }

    /// Nothing to hand over: a ring belongs to the worker that waits on it, so the other
    /// sockets of the calling worker's ring wait until its handler returns.
    pub(super) fn blocking(&self) {}

    /// Requests waiting in the rings' inboxes: a backlog metric.
    pub(super) fn queue_depth(&self) -> usize {
        self.rings.iter().map(|s| s.inbox_len.load(Ordering::Relaxed)).sum::<usize>()
            + self.user_len.load(Ordering::Relaxed)
    }

    pub(super) fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        {
            let _q = self.lock_user();
            self.user_ready.notify_all();
        }
        for slot in self.rings.iter() {
            self.wake(slot);
        }
    }

    fn request(&self, ring: u16, request: Request<C>) {
        let slot = &self.rings[usize::from(ring)];
        {
            let mut inbox = slot.inbox.lock().unwrap_or_else(|e| e.into_inner());
            inbox.push(request);
            slot.inbox_len.store(inbox.len(), Ordering::Release);
        }
        self.wake(slot);
    }

    /// Ends the owner's wait, if it is waiting (at most one write per sleep).
    fn wake(&self, slot: &Slot<C>) {
        if slot.sleeping.swap(false, Ordering::SeqCst) {
            let _ = (&slot.wake).write(&[1]);
        }
    }

    fn lock_user(&self) -> MutexGuard<'_, UserQueue> {
        self.user.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_requests(&self, slot: usize) -> Vec<Request<C>> {
        let slot = &self.rings[slot];
        if slot.inbox_len.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut inbox = slot.inbox.lock().unwrap_or_else(|e| e.into_inner());
        slot.inbox_len.store(0, Ordering::Release);
        std::mem::take(&mut *inbox)
    }

    /// The owner of `slot` is going to wait: true if it may (nothing arrived meanwhile). After
    /// this returns true, every request or user completion posted wakes it.
    fn may_sleep(&self, slot: usize) -> bool {
        let s = &self.rings[slot];
        s.sleeping.store(true, Ordering::SeqCst);
        let idle = s.inbox_len.load(Ordering::SeqCst) == 0
            && self.user_len.load(Ordering::SeqCst) == 0
            && !self.closed.load(Ordering::SeqCst);
        if !idle {
            s.sleeping.store(false, Ordering::SeqCst);
        }
        idle
    }

    fn awake(&self, slot: usize) {
        self.rings[slot].sleeping.store(false, Ordering::SeqCst);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Bytes wait in the socket (a peek that never blocks: the socket itself is blocking).
fn has_data(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    socket2::SockRef::from(stream).recv_with_flags(&mut byte, flags).is_ok_and(|n| n > 0)
}
