//! The buffer pool.
//!
//! A connection borrows a receive buffer only once the port has seen data to read (the IOCP
//! "zero-byte receive" idea), so an idle connection holds no buffer at all. Buffers go back to the
//! pool when dropped; the pool keeps at most `retain` of them and frees the rest, so a burst of
//! activity does not pin its peak memory forever.

use crossbeam_channel::{Receiver, Sender};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

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

    /// Borrows an empty buffer (length 0, capacity `buffer_size()`).
    pub fn take(&self) -> Buf {
        let data = self.inner.free_rx.try_recv().unwrap_or_else(|_| vec![0u8; self.inner.size].into_boxed_slice());
        Buf { data: Some(data), len: 0, pool: self.clone() }
    }

    /// How many idle buffers the pool holds right now.
    pub fn idle(&self) -> usize {
        self.inner.free_rx.len()
    }
}

/// A pooled buffer: `len` bytes of valid data out of a fixed capacity. Returns to its pool on drop.
pub struct Buf {
    data: Option<Box<[u8]>>,
    len: usize,
    pool: BufferPool,
}

impl Buf {
    /// The whole capacity, for reading into.
    pub fn spare(&mut self) -> &mut [u8] {
        self.data.as_deref_mut().expect("buffer present until drop")
    }

    pub fn capacity(&self) -> usize {
        self.pool.inner.size
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
        &self.data.as_deref().expect("buffer present until drop")[..self.len]
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
        if let Some(data) = self.data.take() {
            // A full free list means enough idle buffers already: let this one be freed.
            let _ = self.pool.inner.free_tx.try_send(data);
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf").field("len", &self.len).field("capacity", &self.capacity()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_retention_is_bounded() {
        let pool = BufferPool::new(64, 2);
        let bufs: Vec<Buf> = (0..5).map(|_| pool.take()).collect();
        assert_eq!(pool.idle(), 0);
        drop(bufs);
        assert_eq!(pool.idle(), 2, "only `retain` buffers are kept");
        let mut b = pool.take();
        assert_eq!(pool.idle(), 1);
        assert_eq!(b.len(), 0);
        b.spare()[..3].copy_from_slice(b"abc");
        b.set_len(3);
        assert_eq!(&b[..], b"abc");
    }

    #[test]
    #[should_panic(expected = "beyond buffer capacity")]
    fn set_len_past_capacity_is_refused() {
        BufferPool::new(8, 1).take().set_len(9);
    }
}
