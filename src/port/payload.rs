//! What a posted send writes: one pooled buffer (echo sends back what it received), or a queue
//! of shared lines (a chat broadcast allocates a line once and shares it among all recipients),
//! written with one `writev` per attempt.

use crate::buffer::Buf;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// Slices handed to one `writev`; well under every platform's IOV_MAX.
const MAX_SLICES: usize = 64;

pub enum Payload {
    Buf(Buf),
    Shared(VecDeque<Arc<[u8]>>),
}

impl From<Buf> for Payload {
    fn from(buf: Buf) -> Self {
        Payload::Buf(buf)
    }
}

impl From<VecDeque<Arc<[u8]>>> for Payload {
    fn from(lines: VecDeque<Arc<[u8]>>) -> Self {
        Payload::Shared(lines)
    }
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Buf(buf) => buf.len(),
            Payload::Shared(lines) => lines.iter().map(|l| l.len()).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload being written: `done` bytes of it are in the kernel already.
pub(super) struct Cursor {
    payload: Payload,
    done: usize,
    total: usize,
    /// Shared lines already written are dropped from the front; this much of the first
    /// remaining one went out in an earlier partial write.
    skip: usize,
}

impl Cursor {
    pub(super) fn new(payload: Payload) -> Self {
        let total = payload.len();
        Cursor { payload, done: 0, total, skip: 0 }
    }

    pub(super) fn finished(&self) -> bool {
        self.done == self.total
    }

    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Bytes the kernel has taken so far.
    pub(super) fn done(&self) -> usize {
        self.done
    }

    /// One write of what is left; returns the bytes the kernel took.
    pub(super) fn write_to(&mut self, mut out: impl Write) -> io::Result<usize> {
        let n = match &self.payload {
            Payload::Buf(buf) => out.write(&buf[self.done..])?,
            Payload::Shared(_) => {
                let mut slices = Vec::with_capacity(MAX_SLICES);
                self.pending(|s| slices.push(IoSlice::new(s)));
                out.write_vectored(&slices)?
            }
        };
        self.advance(n);
        Ok(n)
    }

    /// What is left to send, as at most [`MAX_SLICES`] slices, in order. They point into the
    /// payload's heap memory, which stays where it is while the cursor lives (io_uring hands
    /// the addresses to the kernel).
    pub(super) fn pending<'a>(&'a self, mut slice: impl FnMut(&'a [u8])) {
        match &self.payload {
            Payload::Buf(buf) => slice(&buf[self.done..]),
            Payload::Shared(lines) => {
                for (i, line) in lines.iter().take(MAX_SLICES).enumerate() {
                    slice(if i == 0 { &line[self.skip..] } else { line });
                }
            }
        }
    }

    /// The kernel took `n` more bytes.
    pub(super) fn advance(&mut self, n: usize) {
        if let Payload::Shared(lines) = &mut self.payload {
            let mut left = self.skip + n;
            while lines.front().is_some_and(|l| l.len() <= left) {
                left -= lines.pop_front().map_or(0, |l| l.len());
            }
            self.skip = left;
        }
        self.done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, like a nearly full socket.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn shared_lines_survive_partial_writes_in_order() {
        let lines: VecDeque<Arc<[u8]>> =
            ["PING :a\r\n", "x", "", "PRIVMSG #c :hello\r\n"].iter().map(|s| Arc::from(s.as_bytes())).collect();
        let expect: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
        for cap in 1..=expect.len() {
            let mut cursor = Cursor::new(lines.clone().into());
            let mut out = Trickle { got: Vec::new(), cap };
            while !cursor.finished() {
                cursor.write_to(&mut out).unwrap();
            }
            assert_eq!(out.got, expect, "cap {cap}");
        }
    }
}
