//! One ring, as its owner thread sees it: the kernel ring, the table of operations in flight, the
//! completions reaped and not yet handed out. Everything here runs on the owner thread (the ring is
//! `SINGLE_ISSUER`); other threads reach it through the inbox in [`super::Uring`].

use super::bufring::{self, BufRing};
use super::{Abort, Request, Uring};
use crate::buffer::Buf;
use crate::port::payload::{Cursor, Payload};
use crate::port::socket::IoState;
use crate::port::{Completion, CompletionPort, OpError, Shared, Socket, Wait};
use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use mio::net::TcpStream;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::io::{self, PipeReader, PipeWriter};
use std::mem::ManuallyDrop;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Submission queue entries; a full queue is submitted before the next push.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries. With DEFER_TASKRUN completions are produced inside our own wait, a
/// batch at a time; the kernel keeps any overflow (FEAT_NODROP) until there is room.
const CQ_ENTRIES: u32 = 8192;
/// How long a closing ring waits for its cancelled operations to come back.
const TEARDOWN: Duration = Duration::from_secs(2);
/// The user data of a socket's multishot receive: this bit and the socket's key (whose top bit
/// the port keeps clear). Such a receive, which an idle connection always has armed, needs no
/// entry in the table: the completion finds its socket in the port's socket table.
const RECV_TAG: u64 = 1 << 63;
/// `IoState::recv_op` for the multishot receive (other operations record their key).
const PROVIDED_RECV: NonZeroU32 = NonZeroU32::MAX;
/// IORING_ENTER_GETEVENTS (not exported by the crate).
const ENTER_GETEVENTS: u32 = 1;
/// Sendmsg headers kept for reuse per ring. A chat broadcast has a send in flight to nearly every
/// member at once, all reaped together: with 64 spares, most sends in a 1,000-client channel
/// allocated a header and regrew its iovecs (about 5 allocations a send, 5 % of the server's
/// time in malloc and free). At most about 1 KiB each (64 iovecs): 1 MiB a ring when full.
/// (Copying the slices into one buffer for a plain send instead cost more than the `sendmsg`.)
const SPARE_MSGS: usize = 1024;
/// Slots in a ring's file table, at most (the open-file limit caps it too): 8 bytes of kernel
/// memory each. A socket whose table index lies past it is named by its descriptor.
const FIXED_FILES: u32 = 65_536;

/// How an entry names its socket: by its slot in the ring's file table, so the kernel skips the
/// descriptor lookup and its reference count on every operation (about 100 ns a round trip), or,
/// when it has none, by its descriptor.
#[derive(Clone, Copy)]
enum Target {
    Fixed(u32),
    Fd(RawFd),
}

/// `$body` with `$t` bound to `$target` as the crate's type for that kind of name.
macro_rules! on_target {
    ($target:expr, $t:ident => $body:expr) => {
        match $target {
            Target::Fixed(slot) => {
                let $t = Fixed(slot);
                $body
            }
            Target::Fd(fd) => {
                let $t = Fd(fd);
                $body
            }
        }
    };
}

thread_local! {
    /// The rings this thread owns, one per port at most. A `thread_local` cannot be generic, so
    /// they are kept type-erased; [`with_owned`] finds the caller's.
    static OWNED: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the ring of `port` this thread owns, or with `None`.
pub(super) fn with_owned<C: Send + Sync + 'static, T>(
    port: &CompletionPort<C>,
    f: impl FnOnce(Option<&mut Ring<C>>) -> T,
) -> T {
    OWNED.with(|owned| {
        let mut owned = owned.borrow_mut();
        let mine =
            owned.iter_mut().filter_map(|r| r.downcast_mut::<Ring<C>>()).find(|r| Arc::ptr_eq(&r.port, &port.shared));
        f(mine)
    })
}

/// Stops owning `port`'s ring (after the port shut down): waits for the kernel to give back
/// everything in flight, then frees the ring.
pub(super) fn release<C: Send + Sync + 'static>(port: &CompletionPort<C>) {
    let ring = OWNED.with(|owned| {
        let mut owned = owned.borrow_mut();
        let i = owned
            .iter()
            .position(|r| r.downcast_ref::<Ring<C>>().is_some_and(|r| Arc::ptr_eq(&r.port, &port.shared)))?;
        Some(owned.swap_remove(i))
    });
    drop(ring);
}

/// What the kernel must not outlive: the ring and the buffer table it reads.
struct Kernel {
    uring: IoUring,
    bufs: BufRing,
}

/// An operation in flight, by its key (the entry's user data); receives into provided buffers
/// are not in the table (see [`RECV_TAG`]).
enum Op<C: Send + Sync + 'static> {
    /// A receive into a pool buffer, when the provided ones had run out.
    PoolRecv {
        socket: Arc<Socket<C>>,
        buf: Buf,
    },
    Send(SendOp<C>),
    Cancel,
    /// The read on the wake-up pipe.
    Wake,
}

/// A send and the memory the kernel reads while it is in flight: the payload (heap memory that
/// does not move) and, when it is several slices, the iovecs and header that point into it.
struct SendOp<C> {
    socket: Arc<Socket<C>>,
    cursor: Cursor,
    msg: Option<Box<Msg>>,
}

/// What a socket's multishot receive brought while no receive was posted: held, in order, for
/// the next posts. One such result is the common case under load, not a client running ahead:
/// the peer answered our send at once, and its bytes were reaped in the same batch as the send's
/// completion, before the handler had seen that and posted its receive. A second one is a client
/// sending ahead of what it is served: the multishot is stopped then, so the kernel reads no
/// further and TCP flow control pushes back on it, as with a receive re-armed after each send;
/// such a client holds two or three buffers (what arrived before the stop took effect).
#[derive(Default)]
struct Parked {
    results: VecDeque<(i32, Option<Buf>)>,
    /// A cancel of the multishot is on its way.
    stopping: bool,
}

/// Results a multishot brings beyond this many, with none posted, stop it.
const PARK_BEFORE_STOP: usize = 1;
/// Emptied `Parked` queues kept for reuse, so that parking allocates nothing.
const SPARE_PARKED: usize = 64;

/// Hashes a socket key, already unique, with one multiply: SipHash cost about 60 ns a park.
#[derive(Default)]
struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `sendmsg`'s header and iovecs, boxed so they stay put while the table moves, and kept for
/// reuse (up to [`SPARE_MSGS`]) so a chat connection's sends allocate nothing.
struct Msg {
    iov: Vec<libc::iovec>,
    hdr: libc::msghdr,
}

impl Default for Msg {
    fn default() -> Self {
        // SAFETY: msghdr is plain data (pointers and integers); all zeroes is its empty value.
        Msg { iov: Vec::new(), hdr: unsafe { std::mem::zeroed() } }
    }
}

pub(super) struct Ring<C: Send + Sync + 'static> {
    port: Arc<Shared<C>>,
    slot: usize,
    kernel: ManuallyDrop<Kernel>,
    ops: slab::Slab<Op<C>>,
    ready: VecDeque<Completion<C>>,
    wake_rx: PipeReader,
    wake_buf: Box<[u8; 64]>,
    /// Descriptors of closed sockets (and their file-table slots), let go after the next
    /// submission.
    closing: Vec<(TcpStream, Option<u32>)>,
    /// Slots in the file table (0: the kernel gave none, every socket goes by descriptor).
    files: u32,
    /// Multishot receives armed (they have no table entry to count).
    recvs: usize,
    /// By socket key: results that came with no receive posted.
    parked: HashMap<usize, Parked, BuildHasherDefault<KeyHash>>,
    spare_parked: Vec<VecDeque<(i32, Option<Buf>)>>,
    /// What one reap took from the completion queue (kept to reuse its memory).
    reaped: Vec<Reaped<C>>,
    /// Boxed: a spare moves into a `SendOp`, where the kernel needs its header to stay put.
    #[allow(clippy::vec_box)]
    spare_msgs: Vec<Box<Msg>>,
}

/// One completion: user data, result, flags, and for a provided-buffer receive its socket.
type Reaped<C> = (u64, i32, u32, Option<Arc<Socket<C>>>);

/// A ring made but not yet started, and the read end of its wake pipe. Both descriptors are
/// taken when the port is made, so the acceptor cannot use up the open-file limit before a late
/// worker starts its ring. The kernel keeps the ring disabled (no submissions, no issuer yet)
/// until then.
pub(super) struct Unstarted {
    uring: IoUring,
    wake_rx: PipeReader,
}

impl Unstarted {
    /// The ring, and the pipe's write end, with which other threads wake its owner.
    pub(super) fn new() -> io::Result<(Self, PipeWriter)> {
        let (wake_rx, wake) = std::io::pipe()?;
        let uring = builder().setup_r_disabled().build(SQ_ENTRIES)?;
        Ok((Unstarted { uring, wake_rx }, wake))
    }
}

impl<C: Send + Sync + 'static> Ring<C> {
    /// Starts the ring of `slot` on the calling thread, which owns it from now on: enabling it
    /// makes this thread its single issuer.
    pub(super) fn start(
        port: &CompletionPort<C>,
        slot: usize,
        unstarted: Unstarted,
        buffers: u16,
        buffer_size: usize,
    ) -> io::Result<()> {
        let Unstarted { uring, wake_rx } = unstarted;
        uring.submitter().register_enable_rings()?;
        let bufs = BufRing::register(&uring, buffers, buffer_size)?;
        let files = file_table_size();
        let files = match uring.submitter().register_files_sparse(files) {
            Ok(()) => files,
            Err(e) => {
                tracing::debug!(error = %e, "no io_uring file table; sockets go by descriptor");
                0
            }
        };
        let mut ring = Ring {
            port: port.shared.clone(),
            slot,
            kernel: ManuallyDrop::new(Kernel { uring, bufs }),
            ops: slab::Slab::new(),
            ready: VecDeque::new(),
            wake_rx,
            wake_buf: Box::new([0; 64]),
            closing: Vec::new(),
            files,
            recvs: 0,
            parked: HashMap::default(),
            spare_parked: Vec::new(),
            reaped: Vec::new(),
            spare_msgs: Vec::new(),
        };
        ring.arm_wake();
        OWNED.with(|owned| owned.borrow_mut().push(Box::new(ring)));
        Ok(())
    }

    pub(super) fn slot(&self) -> usize {
        self.slot
    }

    /// Queues a completion behind those already reaped.
    pub(super) fn defer(&mut self, c: Completion<C>) {
        self.ready.push_back(c);
    }

    /// The next completion of this ring, or a user completion; waits until `deadline`.
    pub(super) fn get(
        &mut self,
        uring: &Uring<C>,
        port: &CompletionPort<C>,
        deadline: Option<Instant>,
    ) -> Result<Completion<C>, Wait> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(c);
            }
            for request in uring.take_requests(self.slot) {
                self.handle(request);
            }
            self.let_go_closed();
            self.kernel.bufs.recycle();
            if let Some(v) = uring.pop_user() {
                return Ok(Completion::User(v));
            }
            if uring.is_closed() {
                // Leave the thread-local borrow first: releasing frees this ring.
                return Err(Wait::Closed);
            }
            let timed_out = self.submit_and_wait(uring, deadline);
            self.reap(port);
            if timed_out && self.ready.is_empty() {
                return Err(Wait::TimedOut);
            }
        }
    }

    /// Submits what is queued and waits for at least one completion (or the deadline). True when
    /// the deadline passed.
    fn submit_and_wait(&mut self, uring: &Uring<C>, deadline: Option<Instant>) -> bool {
        let queued = self.kernel.uring.submission().len() as u32;
        let submitter = self.kernel.uring.submitter();
        if !uring.may_sleep(self.slot) {
            // Work arrived meanwhile: submit, but only collect what is already done.
            if let Err(e) = submitter.submit() {
                tracing::error!(error = %e, "io_uring submit failed");
            }
            return false;
        }
        let result = match deadline {
            None => submitter.submit_and_wait(1),
            Some(d) => match d.saturating_duration_since(Instant::now()) {
                // A zero wait is a poll: the kernel would arm a timer and sleep for the thread's
                // timer slack (tens of microseconds) before saying "time is up".
                // GETEVENTS with nothing to wait for still runs the ring's deferred completion work.
                left if left.is_zero() => {
                    // SAFETY: no argument is passed (no EXT_ARG flag), so the kernel reads no
                    // memory of ours beyond the rings it already has.
                    unsafe { submitter.enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None) }
                        .and(Err(io::Error::from_raw_os_error(libc::ETIME)))
                }
                left => submitter.submit_with_args(1, &SubmitArgs::new().timespec(&Timespec::from(left))),
            },
        };
        uring.awake(self.slot);
        match result {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => true,
            // A signal, or completions waiting for room: reap and go round again.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => false,
            Err(e) => {
                tracing::error!(error = %e, "io_uring wait failed");
                deadline.is_some_and(|d| Instant::now() >= d)
            }
        }
    }

    fn handle(&mut self, request: Request<C>) {
        match request {
            Request::Recv(socket) => self.recv_locked(&socket, &mut socket.lock()),
            Request::Send(socket, payload) => self.send_locked(&socket, &mut socket.lock(), payload),
            Request::Cancel(socket, why) => self.cancel(&socket, why),
            Request::Close(stream, slot) => self.closing.push((stream, slot)),
        }
    }

    /// Lets go of closed sockets' descriptors and file-table slots, once the kernel has every
    /// entry queued so far (some may still name them).
    fn let_go_closed(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        if let Err(e) = self.kernel.uring.submit() {
            tracing::error!(error = %e, "io_uring submit failed");
        }
        for (stream, slot) in self.closing.drain(..) {
            // Operations still in flight keep the file until they end; the slot is free now.
            if let Some(slot) = slot
                && let Err(e) = self.kernel.uring.submitter().register_files_update(slot, &[-1])
            {
                tracing::debug!(error = %e, slot, "clearing an io_uring file slot failed");
            }
            drop(stream);
        }
    }

    /// Puts the socket's descriptor in the file table, at the socket's table index (unique among
    /// open sockets, so no slot is shared), before its first operation.
    fn register(&mut self, socket: &Socket<C>, st: &mut IoState, fd: RawFd) {
        let Some(slot) = u32::try_from(socket.index()).ok().filter(|&s| s < self.files) else { return };
        // A closed socket that had this index may hold the slot still, under queued entries.
        self.let_go_closed();
        match self.kernel.uring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => st.set_registered(true),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring file table update failed; this ring's sockets go by descriptor");
                self.files = 0;
            }
        }
    }

    /// Posts the socket's receive; `st` is its state, locked by the caller. A result parked
    /// meanwhile completes it at once; otherwise the socket's multishot receive, armed once and
    /// left armed, completes it when data comes (the kernel picks the buffer then). Arming costs
    /// an entry, a poll registration and its removal: a multishot pays them once per connection,
    /// not once a round trip.
    pub(super) fn recv_locked(&mut self, socket: &Arc<Socket<C>>, st: &mut IoState) {
        let Some(fd) = st.stream.as_ref().map(AsRawFd::as_raw_fd) else { return };
        if !st.recv_posted() {
            return;
        }
        if let Some((res, buf)) = self.unpark(socket.key()) {
            let result = self.recv_result(socket, st, Some(PROVIDED_RECV), buf, res);
            self.ready.push_back(Completion::Recv { socket: socket.clone(), result });
            return;
        }
        if st.recv_op.is_some() {
            // Armed already (or a pool receive is in flight).
            return;
        }
        if !st.registered() {
            self.register(socket, st, fd);
        }
        st.recv_op = Some(PROVIDED_RECV);
        self.recvs += 1;
        let entry = on_target!(target(socket, st, fd), t => opcode::RecvMulti::new(t, bufring::GROUP).build())
            .user_data(RECV_TAG | socket.key() as u64);
        // SAFETY: the kernel picks the buffers from the registered group, which outlives every
        // operation (teardown waits for them); the descriptor stays open until after the
        // submission that carries this entry (see `closing`).
        unsafe { self.push(&entry) };
    }

    /// The oldest result parked for the socket `key`, if any.
    fn unpark(&mut self, key: usize) -> Option<(i32, Option<Buf>)> {
        if self.parked.is_empty() {
            return None;
        }
        let parked = self.parked.get_mut(&key)?;
        let result = parked.results.pop_front();
        if parked.results.is_empty() && !parked.stopping {
            self.unpark_all(key);
        }
        result
    }

    /// Forgets what is parked for the socket `key`, keeping the queue's memory for reuse.
    fn unpark_all(&mut self, key: usize) {
        if let Some(mut parked) = self.parked.remove(&key)
            && self.spare_parked.len() < SPARE_PARKED
        {
            parked.results.clear();
            self.spare_parked.push(parked.results);
        }
    }

    /// All provided buffers were out when data came: receive into a pool buffer instead.
    fn recv_into_pool(&mut self, socket: &Arc<Socket<C>>) {
        let mut st = socket.lock();
        let Some(fd) = st.stream.as_ref().map(AsRawFd::as_raw_fd) else { return };
        let mut buf = self.port.pool.take();
        let (ptr, len) = (buf.spare().as_mut_ptr(), u32::try_from(buf.capacity()).unwrap_or(u32::MAX));
        let key = self.ops.insert(Op::PoolRecv { socket: socket.clone(), buf });
        st.recv_op = op_id(key);
        let target = target(socket, &st, fd);
        drop(st);
        let entry = on_target!(target, t => opcode::Recv::new(t, ptr, len).build()).user_data(key as u64);
        // SAFETY: `ptr` is the pool buffer's heap memory, owned by the table entry `key` (the
        // `Buf` moves with the entry, its memory does not) until the completion is reaped.
        unsafe { self.push(&entry) };
    }

    /// Posts a send of `payload`; `st` is the socket's state, locked by the caller.
    pub(super) fn send_locked(&mut self, socket: &Arc<Socket<C>>, st: &mut IoState, payload: Payload) {
        if st.is_closed() || st.send_op.is_some() {
            return;
        }
        st.sent = 0;
        let cursor = Cursor::new(payload);
        if cursor.finished() {
            // Nothing to write: done at once.
            st.set_send_posted(false);
            self.ready.push_back(Completion::Send { socket: socket.clone(), result: Ok(0) });
            return;
        }
        self.submit_send(SendOp { socket: socket.clone(), cursor, msg: None }, st);
    }

    /// Posts (or re-posts, after a partial send) what is left of `op`; `st` is its socket's
    /// state, locked by the caller.
    fn submit_send(&mut self, mut op: SendOp<C>, st: &mut IoState) {
        let Some(fd) = st.stream.as_ref().map(AsRawFd::as_raw_fd) else { return };
        let target = target(&op.socket, st, fd);
        let (mut first, mut slices) = (None, 0);
        op.cursor.pending(|s| {
            first = first.or(Some(s));
            slices += 1;
        });
        let entry = match first {
            // One slice (an echo, a single line): a plain send, nothing to allocate.
            Some(one) if slices == 1 => {
                let len = u32::try_from(one.len()).unwrap_or(u32::MAX);
                on_target!(target, t => opcode::Send::new(t, one.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build())
            }
            _ => {
                let msg = op.msg.get_or_insert_with(|| self.spare_msgs.pop().unwrap_or_default());
                let iov = &mut msg.iov;
                iov.clear();
                op.cursor
                    .pending(|s| iov.push(libc::iovec { iov_base: s.as_ptr().cast_mut().cast(), iov_len: s.len() }));
                msg.hdr.msg_iov = msg.iov.as_mut_ptr();
                msg.hdr.msg_iovlen = msg.iov.len() as _;
                on_target!(target, t => opcode::SendMsg::new(t, &msg.hdr).flags(libc::MSG_NOSIGNAL as u32).build())
            }
        };
        let key = self.ops.insert(Op::Send(op));
        st.send_op = op_id(key);
        // SAFETY: the entry points at the payload's heap memory and, for a SendMsg, at the
        // iovecs and header in the boxed `Msg`; the table entry `key` owns both until its
        // completion is reaped (the payload's and the box's memory do not move with the entry);
        // the descriptor stays open until after the submission (see `closing`).
        unsafe { self.push(&entry.user_data(key as u64)) };
    }

    /// Asks the kernel to end the socket's pending operation, if the port still wants that.
    fn cancel(&mut self, socket: &Arc<Socket<C>>, why: Abort) {
        let mut st = socket.lock();
        if st.is_closed() || st.cancel != Some(why) || st.cancel_op.is_some() {
            return;
        }
        // The drain ends only a quiet receive; the idle timeout ends whatever is pending.
        // A multishot stays armed while no receive is posted: it is only the target when one is.
        let recv = st.recv_op.filter(|_| st.recv_posted());
        let target = match why {
            Abort::Shutdown => recv,
            Abort::IdleTimeout => recv.or(st.send_op),
        };
        let Some(target) = target else {
            // It completed before we got here: nothing to cancel.
            st.cancel = None;
            return;
        };
        st.cancel_op = Some(target);
        drop(st);
        let target = if target == PROVIDED_RECV { RECV_TAG | socket.key() as u64 } else { u64::from(target.get() - 1) };
        self.push_cancel(target);
    }

    /// Asks the kernel to end the operation whose user data is `target`.
    fn push_cancel(&mut self, target: u64) {
        let key = self.ops.insert(Op::Cancel);
        let entry = opcode::AsyncCancel::new(target).build().user_data(key as u64);
        // SAFETY: a cancel refers to no memory.
        unsafe { self.push(&entry) };
    }

    fn arm_wake(&mut self) {
        let key = self.ops.insert(Op::Wake);
        let entry = opcode::Read::new(Fd(self.wake_rx.as_raw_fd()), self.wake_buf.as_mut_ptr(), 64)
            .build()
            .user_data(key as u64);
        // SAFETY: `wake_buf` is boxed in the ring and the pipe is its field: both live until the
        // ring is torn down, which waits for this read to come back.
        unsafe { self.push(&entry) };
    }

    /// Pushes an entry, submitting first if the queue is full.
    ///
    /// # Safety
    /// Whatever the entry points to must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: passed on from the caller.
            if unsafe { self.kernel.uring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.kernel.uring.submit() {
                tracing::error!(error = %e, "io_uring submit failed");
            }
        }
    }

    /// Turns what the kernel finished into completions.
    fn reap(&mut self, port: &CompletionPort<C>) {
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(self.kernel.uring.completion().map(|c| (c.user_data(), c.result(), c.flags(), None)));
        if reaped.iter().any(|r| r.0 & RECV_TAG != 0) {
            // One look at the socket table for the whole batch's receives.
            let sockets = port.sockets();
            for r in reaped.iter_mut().filter(|r| r.0 & RECV_TAG != 0) {
                r.3 = CompletionPort::socket_for(&sockets, (r.0 & !RECV_TAG) as usize).cloned();
            }
        }
        for (key, res, flags, socket) in reaped.drain(..) {
            if key & RECV_TAG != 0 {
                let more = cqueue::more(flags);
                if !more {
                    self.recvs -= 1;
                }
                let n = usize::try_from(res).unwrap_or(0);
                let buf = cqueue::buffer_select(flags).map(|id| self.kernel.bufs.take(id, n));
                match socket {
                    Some(socket) => self.on_shot(socket, buf, res, more),
                    // A socket closed meanwhile is gone from the table; its buffer goes back
                    // with `buf`, and what it had parked once its multishot has ended.
                    None if !more => self.unpark_all((key & !RECV_TAG) as usize),
                    None => {}
                }
                continue;
            }
            let Some(op) = self.ops.try_remove(key as usize) else { continue };
            match op {
                Op::Wake => self.arm_wake(),
                Op::Cancel => {}
                Op::PoolRecv { socket, mut buf } => {
                    buf.set_len(usize::try_from(res).unwrap_or(0));
                    self.finish_recv(socket, buf, res);
                }
                Op::Send(op) => self.finish_send(port, op, res),
            }
        }
        self.reaped = reaped;
    }

    /// A result of a socket's multishot receive: `res` as the kernel put it, `buf` the bytes if
    /// it read any; `more`: the multishot is still armed.
    fn on_shot(&mut self, socket: Arc<Socket<C>>, buf: Option<Buf>, res: i32, more: bool) {
        let key = socket.key();
        let mut st = socket.lock();
        if !more {
            // It has ended: nothing more comes until it is armed again.
            st.recv_op = None;
            if let Some(parked) = self.parked.get_mut(&key) {
                parked.stopping = false;
                if parked.results.is_empty() || st.is_closed() {
                    self.unpark_all(key);
                }
            }
        }
        if st.is_closed() {
            return;
        }
        let behind = self.parked.get(&key).is_some_and(|p| !p.results.is_empty());
        if res == -libc::ENOBUFS || res == -libc::ECANCELED {
            // The multishot ended without data. A cancel of the port's (idle timeout, drain) is
            // the posted receive's answer; every provided buffer being out sends it to the pool;
            // our own stop, or a cancel that data beat, just ends it: arm again if wanted.
            if st.recv_posted() && !behind {
                if res == -libc::ENOBUFS {
                    drop(st);
                    return self.recv_into_pool(&socket);
                }
                if let Some(why) = st.cancelled(Some(PROVIDED_RECV)) {
                    st.set_recv_posted(false);
                    drop(st);
                    return self.ready.push_back(Completion::Recv { socket, result: Err(why.into()) });
                }
                self.recv_locked(&socket, &mut st);
            } else if res == -libc::ECANCELED {
                st.cancelled(Some(PROVIDED_RECV));
            }
            return;
        }
        let (res, buf) = if !st.recv_posted() || behind {
            let spare = &mut self.spare_parked;
            let parked = self
                .parked
                .entry(key)
                .or_insert_with(|| Parked { results: spare.pop().unwrap_or_default(), stopping: false });
            parked.results.push_back((res, buf));
            if more && !parked.stopping && parked.results.len() > PARK_BEFORE_STOP {
                parked.stopping = true;
                self.push_cancel(RECV_TAG | key as u64);
            }
            if !st.recv_posted() {
                return;
            }
            self.unpark(key).expect("a result was just parked")
        } else {
            (res, buf)
        };
        let result = self.recv_result(&socket, &mut st, Some(PROVIDED_RECV), buf, res);
        drop(st);
        self.ready.push_back(Completion::Recv { socket, result });
    }

    /// A pool receive came back: `res` as the kernel put it, `buf` the buffer it read into.
    fn finish_recv(&mut self, socket: Arc<Socket<C>>, buf: Buf, res: i32) {
        let mut st = socket.lock();
        let this = st.recv_op.take();
        if st.is_closed() {
            return;
        }
        let result = if res == -libc::ECANCELED {
            st.set_recv_posted(false);
            Err(st.cancelled(this).map_or_else(|| errno(res), OpError::from))
        } else {
            self.recv_result(&socket, &mut st, this, Some(buf), res)
        };
        drop(st);
        self.ready.push_back(Completion::Recv { socket, result });
    }

    /// What the posted receive of `socket` completes with, given a result of operation `this`.
    fn recv_result(
        &self,
        socket: &Socket<C>,
        st: &mut IoState,
        this: Option<NonZeroU32>,
        buf: Option<Buf>,
        res: i32,
    ) -> Result<Buf, OpError> {
        st.set_recv_posted(false);
        if res < 0 {
            return Err(errno(res));
        }
        // Data (or the peer's FIN) wins over a cancel meant for this receive.
        st.settle_cancel(this, true);
        st.set_quiet(false);
        socket.touch(self.port.now());
        Ok(buf.unwrap_or_else(|| self.port.pool.take()))
    }

    fn finish_send(&mut self, port: &CompletionPort<C>, op: SendOp<C>, res: i32) {
        let SendOp { socket, mut cursor, mut msg } = op;
        let mut st = socket.lock();
        let this = st.send_op.take();
        if st.is_closed() {
            return;
        }
        let result = match res {
            0 => Err(OpError::Io(io::ErrorKind::WriteZero.into())),
            1.. => {
                cursor.advance(res as usize);
                st.sent = u32::try_from(cursor.done()).unwrap_or(u32::MAX);
                socket.touch(port.now());
                if cursor.finished() {
                    st.settle_cancel(this, false);
                    Ok(cursor.total())
                } else if let Some(why) =
                    st.cancelled(this).or(st.cancel.filter(|w| *w == Abort::IdleTimeout && st.cancel_op.is_none()))
                {
                    // Cancelled while partly sent: end it rather than post the rest.
                    st.cancel = None;
                    Err(why.into())
                } else {
                    // The rest, with the same header: the socket's lock is held, so take a
                    // reference for the new entry and let go of this one after.
                    let again = SendOp { socket: socket.clone(), cursor, msg };
                    self.submit_send(again, &mut st);
                    return;
                }
            }
            _ if res == -libc::ECANCELED => Err(st.cancelled(this).map_or_else(|| errno(res), OpError::from)),
            _ => Err(errno(res)),
        };
        st.set_send_posted(false);
        st.sent = 0;
        drop(st);
        if let Some(m) = msg.take_if(|_| self.spare_msgs.len() < SPARE_MSGS) {
            self.spare_msgs.push(m);
        }
        // The payload goes back (its buffer to the pool) before the handler runs.
        drop(cursor);
        self.ready.push_back(Completion::Send { socket, result });
    }

    /// Cancels everything in flight and waits for it to come back, so no operation still refers
    /// to memory that is about to be freed. False if the kernel did not give everything back.
    fn drain(&mut self) -> bool {
        let key = self.ops.insert(Op::Cancel);
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any().all()).build().user_data(key as u64);
        // SAFETY: a cancel refers to no memory.
        unsafe { self.push(&entry) };
        let deadline = Instant::now() + TEARDOWN;
        while !(self.ops.is_empty() && self.recvs == 0) && Instant::now() < deadline {
            let ts = Timespec::from(Duration::from_millis(50));
            let _ = self.kernel.uring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            let done: Vec<(u64, u32)> = self.kernel.uring.completion().map(|c| (c.user_data(), c.flags())).collect();
            for (key, flags) in done {
                // Buffers the kernel hands back now go with their entries, or are dropped here.
                if key & RECV_TAG != 0 {
                    if !cqueue::more(flags) {
                        self.recvs -= 1;
                    }
                    if let Some(id) = cqueue::buffer_select(flags) {
                        drop(self.kernel.bufs.take(id, 0));
                    }
                } else {
                    self.ops.try_remove(key as usize);
                }
            }
        }
        self.ops.is_empty() && self.recvs == 0
    }
}

impl<C: Send + Sync + 'static> Drop for Ring<C> {
    fn drop(&mut self) {
        if self.drain() {
            let Kernel { uring, bufs } = &mut *self.kernel;
            if let Err(e) = bufs.unregister(uring) {
                tracing::debug!(error = %e, "unregistering the buffer ring failed; closing the ring frees it");
            }
            // SAFETY: every operation has come back, so the kernel refers to neither the ring nor
            // the buffer table any more; `kernel` is not touched after this.
            unsafe { ManuallyDrop::drop(&mut self.kernel) };
        } else {
            tracing::error!(
                left = self.ops.len(),
                "io_uring operations did not come back; leaking the ring so the kernel never writes freed memory"
            );
            // What the kernel may still touch stays: the ring, the buffers (in `kernel`), the
            // operations' memory and the wake-up buffer.
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 64])));
        }
    }
}

impl IoState {
    /// Operation `op` (the receive, or else the send) completed normally: a cancel aimed at it,
    /// or one not aimed yet that would have been, is moot.
    fn settle_cancel(&mut self, op: Option<std::num::NonZeroU32>, recv: bool) {
        let would_target = recv || self.cancel == Some(Abort::IdleTimeout);
        if (self.cancel_op.is_none() && would_target) || (op.is_some() && self.cancel_op == op) {
            self.cancel = None;
            self.cancel_op = None;
        }
    }

    /// Operation `op` came back cancelled: why, if the port cancelled it.
    fn cancelled(&mut self, op: Option<std::num::NonZeroU32>) -> Option<Abort> {
        if op.is_some() && self.cancel_op == op {
            self.cancel_op = None;
            return self.cancel.take();
        }
        None
    }
}

/// The ring's setup: the owner alone submits, and completion work runs in its own waits.
pub(super) fn builder() -> io_uring::Builder {
    let mut b = IoUring::builder();
    b.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().setup_cqsize(CQ_ENTRIES);
    b
}

/// The socket's slot in its ring's file table, if its descriptor is there (`st` is its state).
pub(super) fn fixed_slot<C>(socket: &Socket<C>, st: &IoState) -> Option<u32> {
    if st.registered() { u32::try_from(socket.index()).ok() } else { None }
}

/// How entries name `socket`, whose descriptor is `fd`.
fn target<C>(socket: &Socket<C>, st: &IoState, fd: RawFd) -> Target {
    fixed_slot(socket, st).map_or(Target::Fd(fd), Target::Fixed)
}

/// The file table's size: [`FIXED_FILES`], or the open-file limit if lower (the kernel allows no
/// more, and a socket's table index stays below the number of descriptors open).
fn file_table_size() -> u32 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 0 };
    u32::try_from(cur).unwrap_or(u32::MAX).min(FIXED_FILES)
}

/// A table key as the socket records it (see `IoState::recv_op`).
fn op_id(key: usize) -> Option<NonZeroU32> {
    // Below PROVIDED_RECV: the table never holds 4 billion operations.
    u32::try_from(key + 1).ok().filter(|&k| k < u32::MAX).and_then(NonZeroU32::new)
}

fn errno(res: i32) -> OpError {
    OpError::Io(io::Error::from_raw_os_error(-res))
}
