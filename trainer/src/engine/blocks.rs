//! The KV cache's blocks: which are free, and how many block tables hold
//! each of the others (a prompt's blocks are held by every sample that
//! shares them).

/// Reference counts of the cache's blocks and a free list.
#[derive(Debug)]
pub(super) struct Blocks {
    refs: Vec<u32>,
    /// Free block ids; the next one handed out is the last.
    free: Vec<u32>,
    peak: usize,
}

impl Blocks {
    /// `n` free blocks.
    pub(super) fn new(n: usize) -> Blocks {
        Blocks {
            refs: vec![0; n],
            free: (0..n as u32).rev().collect(),
            peak: 0,
        }
    }

    /// Blocks in the pool.
    pub(super) fn total(&self) -> usize {
        self.refs.len()
    }

    /// Blocks free now.
    pub(super) fn free(&self) -> usize {
        self.free.len()
    }

    /// The most blocks in use at once so far.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }

    /// A free block, now held once; `None` when there is none.
    pub(super) fn alloc(&mut self) -> Option<u32> {
        let b = self.free.pop()?;
        self.refs[b as usize] = 1;
        self.peak = self.peak.max(self.total() - self.free());
        Some(b)
    }

    /// One more holder of block `b`.
    pub(super) fn retain(&mut self, b: u32) {
        debug_assert!(self.refs[b as usize] > 0, "retaining free block {b}");
        self.refs[b as usize] += 1;
    }

    /// Whether block `b` has more than one holder (a write must copy it first).
    pub(super) fn shared(&self, b: u32) -> bool {
        self.refs[b as usize] > 1
    }

    /// One holder fewer of block `b`; free once none is left.
    pub(super) fn release(&mut self, b: u32) {
        let r = &mut self.refs[b as usize];
        debug_assert!(*r > 0, "releasing free block {b}");
        *r -= 1;
        if *r == 0 {
            self.free.push(b);
        }
    }

    /// Releases every block of `table` and empties it.
    pub(super) fn release_all(&mut self, table: &mut Vec<u32>) {
        for b in table.drain(..) {
            self.release(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_freed_when_their_last_holder_lets_go() {
        let mut b = Blocks::new(3);
        let (x, y, z) = (b.alloc().unwrap(), b.alloc().unwrap(), b.alloc().unwrap());
        assert_eq!((x, y, z), (0, 1, 2));
        assert!(b.alloc().is_none());
        b.retain(y);
        assert!(b.shared(y) && !b.shared(x));
        let mut table = vec![x, y];
        b.release_all(&mut table);
        assert!(table.is_empty());
        assert_eq!(b.free(), 1);
        assert!(!b.shared(y));
        b.release(y);
        b.release(z);
        assert_eq!((b.free(), b.peak()), (3, 3));
        // The most recently freed block comes back first.
        assert_eq!(b.alloc(), Some(2));
    }
}
