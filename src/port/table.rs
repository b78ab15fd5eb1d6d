//! The port's socket table: a socket's index (the low bits of its key) -> the socket.
//!
//! A slot is one pointer, `None` when free (the `slab` crate's entries are twice that: a tag and
//! a free-list link), and the free slots are listed apart, so an open connection's share of the
//! table is 8 bytes. Freed slots are reused last-freed first.

use std::sync::Arc;

pub(super) struct Table<T> {
    slots: Vec<Option<Arc<T>>>,
    /// Indexes of the `None` slots.
    free: Vec<usize>,
    len: usize,
}

impl<T> Table<T> {
    pub(super) fn new() -> Self {
        Table { slots: Vec::new(), free: Vec::new(), len: 0 }
    }

    /// The index the next [`insert`](Self::insert) will use.
    pub(super) fn next_index(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Stores `value` at [`next_index`](Self::next_index) and returns that index.
    pub(super) fn insert(&mut self, value: Arc<T>) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn remove(&mut self, index: usize) -> Option<Arc<T>> {
        let value = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    pub(super) fn get(&self, index: usize) -> Option<&Arc<T>> {
        self.slots.get(index)?.as_ref()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_last_freed_first_and_counted() {
        let mut t = Table::new();
        assert_eq!(t.next_index(), 0);
        let keys: Vec<usize> = (0..4).map(|v| t.insert(Arc::new(v))).collect();
        assert_eq!(keys, [0, 1, 2, 3]);
        assert_eq!(t.remove(1).as_deref(), Some(&1));
        assert_eq!(t.remove(1), None, "a slot is freed once");
        assert_eq!(t.remove(9), None);
        assert_eq!(t.remove(2).as_deref(), Some(&2));
        assert_eq!((t.len(), t.get(1), t.get(3).map(|v| **v)), (2, None, Some(3)));
        assert_eq!(t.next_index(), 2);
        assert_eq!(t.insert(Arc::new(20)), 2);
        assert_eq!(t.insert(Arc::new(10)), 1);
        assert_eq!(t.insert(Arc::new(4)), 4);
        let mut all: Vec<i32> = t.iter().map(|v| **v).collect();
        all.sort_unstable();
        assert_eq!(all, [0, 3, 4, 10, 20]);
        assert!(!t.is_empty());
    }

    #[test]
    fn a_slot_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Option<Arc<u64>>>(), std::mem::size_of::<usize>());
    }
}
