//! A ring's provided-buffer ring: the table of free buffers (of the ring's [`Provided`] block)
//! that the kernel takes from when data arrives. Only the ring's owner thread adds to it; a buffer
//! dropped (on any thread) is marked in the block and added on the owner's next turn.

use crate::buffer::{Buf, Provided};
use io_uring::IoUring;
use io_uring::types::BufRingEntry;
use std::alloc::Layout;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

/// The buffer group id our receives select from (one group per ring).
pub(super) const GROUP: u16 = 0;

pub(super) struct BufRing {
    /// `count` entries, page-aligned, shared with the kernel.
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    mask: u16,
    /// Our producer cursor; the kernel sees it once [`commit`](Self::commit) publishes it.
    tail: u16,
    block: Arc<Provided>,
    registered: bool,
}

impl BufRing {
    /// Registers a ring of `count` (a power of two) buffers of `size` bytes with `uring`, all
    /// offered to the kernel.
    pub(super) fn register(uring: &IoUring, count: u16, size: usize) -> io::Result<Self> {
        assert!(count.is_power_of_two(), "a buffer ring's size is a power of two");
        let block = Provided::new(count, size)?;
        let layout = Layout::array::<BufRingEntry>(usize::from(count))
            .and_then(|l| l.align_to(4096))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad buffer ring size"))?;
        // SAFETY: non-zero size (count >= 1 entries of 16 bytes).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        let entries = NonNull::new(raw).ok_or(io::ErrorKind::OutOfMemory)?;
        let mut ring = BufRing { entries, layout, mask: count - 1, tail: 0, block, registered: false };
        // SAFETY: the entries live, page-aligned, until `Drop`, which only runs after
        // `unregister` (or after the kernel ring is gone, see Ring::teardown).
        unsafe { uring.submitter().register_buf_ring_with_flags(entries.as_ptr() as u64, count, GROUP, 0)? };
        ring.registered = true;
        for id in 0..count {
            ring.add(id);
        }
        ring.commit();
        Ok(ring)
    }

    /// The buffer the kernel filled with `len` bytes, as a completion named it.
    pub(super) fn take(&self, id: u16, len: usize) -> Buf {
        // SAFETY: the completion handed buffer `id` over to us, and nothing else has it: it was
        // offered exactly once (at registration or by `recycle`) and only comes back by a drop.
        unsafe { self.block.take(id, len) }
    }

    /// Offers the kernel every buffer dropped since the last call.
    pub(super) fn recycle(&mut self) {
        let start = self.tail;
        let BufRing { entries, mask, tail, block, .. } = self;
        block.take_returned(|id| Self::put(*entries, *mask, tail, block, id));
        if self.tail != start {
            self.commit();
        }
    }

    /// Stops offering buffers; call before the kernel ring goes.
    pub(super) fn unregister(&mut self, uring: &IoUring) -> io::Result<()> {
        if std::mem::take(&mut self.registered) {
            uring.submitter().unregister_buf_ring(GROUP)?;
        }
        Ok(())
    }

    fn add(&mut self, id: u16) {
        Self::put(self.entries, self.mask, &mut self.tail, &self.block, id);
    }

    /// Writes buffer `id` of `block` at `tail` (the ring's fields, borrowed apart).
    fn put(entries: NonNull<BufRingEntry>, mask: u16, tail: &mut u16, block: &Provided, id: u16) {
        let index = usize::from(*tail & mask);
        // SAFETY: `index < count`, inside the allocation. The kernel reads only entries between
        // its head and the published tail, and this one is past the tail until `commit`.
        let entry = unsafe { &mut *entries.as_ptr().add(index) };
        entry.set_addr(block.addr(id));
        entry.set_len(u32::try_from(block.size()).unwrap_or(u32::MAX));
        entry.set_bid(id);
        *tail = tail.wrapping_add(1);
    }

    fn commit(&self) {
        // SAFETY: the tail field overlays the first entry's reserved bytes of this page-aligned,
        // initialised ring (what `BufRingEntry::tail` computes), and is u16-aligned.
        let tail = unsafe { &*BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        // Release: the kernel must see the entries written before the tail that covers them.
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout; the kernel no longer reads it (the
        // group is unregistered or the kernel ring is gone; a ring that could not be torn down
        // is leaked whole instead of dropped).
        unsafe { std::alloc::dealloc(self.entries.as_ptr().cast(), self.layout) }
    }
}
