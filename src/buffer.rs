//! The buffer pools.
//!
//! A connection borrows a receive buffer only once there is data to read (the IOCP "zero-byte
//! receive" idea), so an idle connection holds no buffer at all. There are two kinds of pool:
//!
//! - [`BufferPool`]: heap buffers the process reads into (the epoll backend). Buffers go back to
//!   the pool when dropped; the pool keeps at most `retain` of them (and each thread the one it
//!   dropped last) and frees the rest, so a burst of activity does not pin its peak memory
//!   forever.
//! - `Provided` (Linux): one block of memory whose buffers the kernel itself fills (an io_uring
//!   provided-buffer ring): the kernel picks a buffer when data arrives, and hands it to us with
//!   the completion; dropping the [`Buf`] gives it back, to be offered to the kernel again.

use crossbeam_channel::{Receiver, Sender};
use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU64, Ordering};

/// A shared pool of equally sized byte buffers.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

struct Inner {
    size: usize,
    // A bounded channel is a lock-free free list: `try_send` fails when `retain` buffers are
    // already idle, and the buffer is freed instead.
    free_tx: Sender<Box<[u8]>>,
    free_rx: Receiver<Box<[u8]>>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers that keeps up to `retain` idle ones for reuse.
    pub fn new(size: usize, retain: usize) -> Self {
        assert!(size > 0, "buffer size must be positive");
        let (free_tx, free_rx) = crossbeam_channel::bounded(retain.max(1));
        BufferPool { inner: Arc::new(Inner { size, free_tx, free_rx }) }
    }

    /// The capacity of every buffer of this pool.
    pub fn buffer_size(&self) -> usize {
        self.inner.size
    }

    /// Borrows an empty buffer (length 0, capacity `buffer_size()`): the one this thread gave
    /// back last if it is this pool's, else one from the free list, else a new one.
    pub fn take(&self) -> Buf {
        if let Some((data, pool)) = SPARE.try_with(Cell::take).ok().flatten() {
            if Arc::ptr_eq(&pool.inner, &self.inner) {
                return Buf { storage: Storage::Pooled { data, pool }, len: 0 };
            }
            pool.give_back(data);
        }
        let data = self.inner.free_rx.try_recv().unwrap_or_else(|_| vec![0u8; self.inner.size].into_boxed_slice());
        Buf { storage: Storage::Pooled { data, pool: self.clone() }, len: 0 }
    }

    /// How many idle buffers the pool's free list holds right now (each thread may keep one
    /// more: the buffer it dropped last).
    pub fn idle(&self) -> usize {
        self.inner.free_rx.len()
    }

    /// A full free list means enough idle buffers already: let this one be freed.
    fn give_back(&self, data: Box<[u8]>) {
        let _ = self.inner.free_tx.try_send(data);
    }
}

thread_local! {
    /// The pooled buffer this thread dropped last, with its pool, for the thread's next take.
    /// An echo takes a buffer, sends it and drops it, then takes one for the next receive: this
    /// hands it the same buffer, still in its cache, without the free list's atomics or the
    /// pool's reference count (measured: 50-90 ns a round trip on the epoll backend).
    static SPARE: Cell<Option<(Box<[u8]>, BufferPool)>> = const { Cell::new(None) };
}

/// A buffer: `len` bytes of valid data out of a fixed capacity. Returns to its pool on drop.
pub struct Buf {
    storage: Storage,
    len: usize,
}

/// An 8-byte tag: with the compiler's choice (2 bytes, the provided buffer's id right after it)
/// every move of a `Buf`, and of the completions and payloads holding one, copied the rest in
/// 16-byte loads two bytes off the 8-byte stores that wrote it, and stalled on each (measured:
/// 27 ns a round trip in one such move alone).
#[repr(u64)]
enum Storage {
    Pooled {
        data: Box<[u8]>,
        pool: BufferPool,
    },
    #[cfg(target_os = "linux")]
    Provided {
        block: Arc<Provided>,
        id: u16,
    },
    /// A heap allocation of its own, freed on drop: what the TLS layer sends, and decrypted
    /// data too large for a pooled buffer.
    Heap(Vec<u8>),
    /// Given back already (only while dropping); also the empty buffer.
    Gone,
}

impl Buf {
    /// A buffer of exactly these bytes, belonging to no pool.
    pub fn from_vec(bytes: Vec<u8>) -> Buf {
        let len = bytes.len();
        // Kept as the Vec it is: making it a boxed slice could mean a reallocation and a copy.
        Buf { storage: Storage::Heap(bytes), len }
    }

    /// A buffer of no bytes (a receive that found EOF), holding no memory.
    pub fn empty() -> Buf {
        Buf { storage: Storage::Gone, len: 0 }
    }

    /// The whole capacity, for reading into.
    pub fn spare(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Pooled { data, .. } => data,
            Storage::Heap(data) => data,
            #[cfg(target_os = "linux")]
            Storage::Provided { block, id } => block.slice_mut(*id),
            Storage::Gone => &mut [],
        }
    }

    pub fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Pooled { data, .. } => data.len(),
            Storage::Heap(data) => data.len(),
            #[cfg(target_os = "linux")]
            Storage::Provided { block, .. } => block.size,
            Storage::Gone => 0,
        }
    }

    /// Marks the first `len` bytes as valid data.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "length beyond buffer capacity");
        self.len = len;
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let whole: &[u8] = match &self.storage {
            Storage::Pooled { data, .. } => data,
            Storage::Heap(data) => data,
            #[cfg(target_os = "linux")]
            Storage::Provided { block, id } => block.slice(*id),
            Storage::Gone => &[],
        };
        &whole[..self.len]
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.spare()[..len]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.storage, Storage::Gone) {
            // On an exiting thread (no spare any more) the closure, buffer and all, is dropped.
            Storage::Pooled { data, pool } => {
                if let Ok(Some((older, its_pool))) = SPARE.try_with(|s| s.replace(Some((data, pool)))) {
                    its_pool.give_back(older);
                }
            }
            #[cfg(target_os = "linux")]
            Storage::Provided { block, id } => block.give_back(id),
            Storage::Heap(_) | Storage::Gone => {}
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf").field("len", &self.len).field("capacity", &self.capacity()).finish()
    }
}

/// The block's alignment: it is given to the kernel as huge pages where it can be.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;
/// Space between a provided buffer's end and the next one's start. Buffers a power of two apart
/// all begin in the same cache set, so the few lines a small message touches evict each other
/// (512 buffers, 8 ways); one line more per buffer gives each buffer's head a set of its own.
/// Measured (perf, 64 B echoes): the kernel's copy into a buffer fell from about 275 to 180 ns a
/// receive; c-epoll, reading into one hot buffer, spends about 100.
#[cfg(target_os = "linux")]
const COLOUR: usize = 64;

/// One block of `count` buffers of `size` bytes that the kernel fills (an io_uring provided-buffer
/// ring's memory). A buffer is either offered to the kernel or held by exactly one [`Buf`]; the
/// block lives as long as the ring that offers it or any `Buf` of it.
#[cfg(target_os = "linux")]
pub(crate) struct Provided {
    base: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
    size: usize,
    /// From one buffer's start to the next: `size` plus [`COLOUR`].
    stride: usize,
    count: u16,
    /// Buffers dropped and not offered to the kernel again yet: bit `id % 64` of word `id / 64`.
    /// A drop is one atomic OR (a channel cost about 20 ns more a round trip); the ring's
    /// thread takes a whole word of them with one swap.
    returned: Box<[AtomicU64]>,
}

// SAFETY: the block is plain memory. A buffer's bytes are touched only by the kernel while the
// buffer is offered to it, and only through the one `Buf` that holds it otherwise (`Buf` hands
// out `&`/`&mut` slices borrowed from itself), so no two threads ever reach the same bytes at once.
#[cfg(target_os = "linux")]
unsafe impl Send for Provided {}
// SAFETY: as above; `&Provided` only gives out slices through a `Buf` that owns the buffer.
#[cfg(target_os = "linux")]
unsafe impl Sync for Provided {}

#[cfg(target_os = "linux")]
impl Provided {
    /// A block of `count` buffers of `size` bytes. The memory is allocated zeroed, so the OS
    /// maps its pages only when the kernel first fills them: an idle server does not pay for the
    /// whole block.
    pub(crate) fn new(count: u16, size: usize) -> std::io::Result<Arc<Self>> {
        let stride = size.checked_add(COLOUR).ok_or(std::io::ErrorKind::InvalidInput)?;
        let total = stride.checked_mul(usize::from(count)).filter(|_| size > 0 && count > 0);
        let layout = total
            .and_then(|n| std::alloc::Layout::from_size_align(n, HUGE_PAGE).ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad provided-buffer size"))?;
        // SAFETY: the layout has a non-zero size (checked above).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = std::ptr::NonNull::new(base).ok_or(std::io::ErrorKind::OutOfMemory)?;
        // SAFETY: advice about our own allocation, which it does not change the contents of.
        unsafe { libc::madvise(base.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE) };
        let returned = (0..usize::from(count).div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(Arc::new(Provided { base, layout, size, stride, count, returned }))
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The address of buffer `id`, to offer it to the kernel.
    pub(crate) fn addr(&self, id: u16) -> u64 {
        assert!(id < self.count, "buffer id out of range");
        self.base.as_ptr() as u64 + (usize::from(id) * self.stride) as u64
    }

    /// The `Buf` for buffer `id`, which the kernel has just handed back filled with `len` bytes.
    ///
    /// # Safety
    /// The caller must own buffer `id`: the kernel returned it (a completion named it) and it
    /// has not been offered again nor handed out since.
    pub(crate) unsafe fn take(self: &Arc<Self>, id: u16, len: usize) -> Buf {
        assert!(id < self.count && len <= self.size, "buffer id or length out of range");
        Buf { storage: Storage::Provided { block: self.clone(), id }, len }
    }

    fn slice(&self, id: u16) -> &[u8] {
        // SAFETY: `id < count` (checked in `take`, the only way to make a `Buf` of this block), so
        // the range lies inside the allocation; the `Buf` calling this owns buffer `id`, so the
        // kernel is not writing it (see the `Send` impl).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(usize::from(id) * self.stride), self.size) }
    }

    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self, id: u16) -> &mut [u8] {
        // SAFETY: as in `slice`; the `&mut Buf` calling this is the one holder of buffer `id`.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(usize::from(id) * self.stride), self.size) }
    }

    fn give_back(&self, id: u16) {
        // Release: the ring's thread, which offers the buffer to the kernel again, must see our
        // last use of its bytes before it (see `take_returned`).
        self.returned[usize::from(id / 64)].fetch_or(1 << (id % 64), Ordering::Release);
    }

    /// Calls `f` with the id of every buffer dropped since the last call (each once).
    pub(crate) fn take_returned(&self, mut f: impl FnMut(u16)) {
        for (word, bits) in self.returned.iter().enumerate() {
            // A plain load first: most words are empty, and a swap would take the line.
            if bits.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut taken = bits.swap(0, Ordering::Acquire);
            while taken != 0 {
                let bit = taken.trailing_zeros();
                taken &= taken - 1;
                // `word < count / 64 + 1` and `bit < 64`, so the id fits (it is below `count`).
                f((word * 64) as u16 + bit as u16);
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the last reference is going, so neither a
        // `Buf` nor the ring (which keeps an `Arc` until the kernel has let go) uses it any more.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_retention_is_bounded() {
        let pool = BufferPool::new(64, 2);
        let bufs: Vec<Buf> = (0..5).map(|_| pool.take()).collect();
        let last = bufs[4].as_ptr();
        assert_eq!(pool.idle(), 0);
        drop(bufs);
        assert_eq!(pool.idle(), 2, "only `retain` buffers are kept, and this thread's spare");
        let spare = pool.take();
        assert_eq!(spare.as_ptr(), last, "the buffer this thread dropped last comes back first");
        assert_eq!(pool.idle(), 2);
        let mut b = pool.take();
        assert_eq!(pool.idle(), 1);
        assert_eq!(b.len(), 0);
        b.spare()[..3].copy_from_slice(b"abc");
        b.set_len(3);
        assert_eq!(&b[..], b"abc");
    }

    #[test]
    fn a_spare_goes_back_to_its_own_pool() {
        let (a, b) = (BufferPool::new(64, 4), BufferPool::new(128, 4));
        drop(a.take());
        assert_eq!(a.idle(), 0, "kept as this thread's spare");
        let from_b = b.take();
        assert_eq!(from_b.capacity(), 128, "another pool's spare is not handed out");
        assert_eq!(a.idle(), 1, "it went back to its own pool instead");
    }

    #[test]
    #[should_panic(expected = "beyond buffer capacity")]
    fn set_len_past_capacity_is_refused() {
        BufferPool::new(8, 1).take().set_len(9);
    }

    /// The provided block without a kernel: every buffer is its own memory, and dropping its
    /// `Buf` sends its id back once.
    #[cfg(target_os = "linux")]
    #[test]
    fn provided_buffers_are_disjoint_and_come_back_on_drop() {
        let block = Provided::new(70, 64).unwrap();
        // Each buffer's head in its own cache set: a power of two plus one line apart.
        assert_eq!(block.addr(1) - block.addr(0), 64 + COLOUR as u64);
        // SAFETY: no kernel is involved: the test owns every buffer of the block.
        let mut bufs: Vec<Buf> = (0..4).map(|id| unsafe { block.take(id, 0) }).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            b.spare().fill(i as u8);
            b.set_len(64);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8), "buffer {i} was written by another");
        }
        drop(bufs.remove(2));
        let back = |block: &Provided| {
            let mut ids = Vec::new();
            block.take_returned(|id| ids.push(id));
            ids
        };
        assert_eq!(back(&block), [2]);
        assert!(back(&block).is_empty(), "an id comes back once");
        // Ids in the block's second word of the bitmap too.
        // SAFETY: as above.
        let late: Vec<Buf> = [64, 69].into_iter().map(|id| unsafe { block.take(id, 0) }).collect();
        drop(bufs);
        drop(late);
        assert_eq!(back(&block), [0, 1, 3, 64, 69]);
    }
}
