//! The free-slot set of one cache_dir: a bitmap (1 bit per slot) with a
//! next-fit cursor, so writes tend to get consecutive slots and an entry's
//! bytes stay contiguous in the map (one zero-copy `Bytes` per run).

/// A plain bit set over slot numbers.
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub fn new(len: u32) -> Bits {
        Bits(vec![0; (len as usize).div_ceil(64)])
    }

    pub fn get(&self, i: u32) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, i: u32, on: bool) {
        if let Some(w) = self.0.get_mut((i / 64) as usize) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
}

pub(crate) struct FreeSlots {
    /// Bit set = slot free.
    words: Vec<u64>,
    slot_count: u32,
    free: u32,
    cursor: u32,
}

impl FreeSlots {
    /// All `slot_count` slots in use; call [`FreeSlots::release`] for free ones.
    pub fn all_used(slot_count: u32) -> FreeSlots {
        FreeSlots {
            words: vec![0; (slot_count as usize).div_ceil(64)],
            slot_count,
            free: 0,
            cursor: 0,
        }
    }

    pub fn free_count(&self) -> u32 {
        self.free
    }

    pub fn is_free(&self, slot: u32) -> bool {
        slot < self.slot_count && self.words[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    pub fn release(&mut self, slot: u32) {
        debug_assert!(slot < self.slot_count);
        if slot < self.slot_count && !self.is_free(slot) {
            self.words[(slot / 64) as usize] |= 1 << (slot % 64);
            self.free += 1;
        }
    }

    fn take(&mut self, slot: u32) {
        self.words[(slot / 64) as usize] &= !(1 << (slot % 64));
        self.free -= 1;
    }

    /// Takes `slot` when it is free.
    pub fn take_exact(&mut self, slot: u32) -> bool {
        if self.is_free(slot) {
            self.take(slot);
            true
        } else {
            false
        }
    }

    /// Takes `n` consecutive free slots, searching from the cursor.
    pub fn take_run(&mut self, n: u32) -> Option<u32> {
        if n == 0 || n > self.free {
            return None;
        }
        let mut start = self.cursor;
        let mut scanned = 0u64;
        let limit = u64::from(self.slot_count) + u64::from(n);
        while scanned < limit {
            if start + n > self.slot_count {
                scanned += u64::from(self.slot_count - start);
                start = 0;
                continue;
            }
            match (0..n).find(|i| !self.is_free(start + i)) {
                None => {
                    for i in 0..n {
                        self.take(start + i);
                    }
                    self.cursor = (start + n) % self.slot_count;
                    return Some(start);
                }
                Some(busy) => {
                    // Skip whole used words quickly.
                    let mut next = start + busy + 1;
                    while next < self.slot_count
                        && next.is_multiple_of(64)
                        && self.words[(next / 64) as usize] == 0
                    {
                        next += 64;
                    }
                    scanned += u64::from(next - start);
                    start = next.min(self.slot_count);
                }
            }
        }
        None
    }

    /// Takes one free slot: `after + 1` when free (keeps runs contiguous),
    /// else the next free one from the cursor.
    pub fn take_one(&mut self, after: Option<u32>) -> Option<u32> {
        if let Some(prev) = after {
            if prev + 1 < self.slot_count && self.take_exact(prev + 1) {
                return Some(prev + 1);
            }
        }
        if self.free == 0 {
            return None;
        }
        let words = self.words.len();
        let first = (self.cursor / 64) as usize;
        // The last step revisits the cursor's word for bits before the cursor.
        for step in 0..=words {
            let w = (first + step) % words;
            let mut bits = self.words[w];
            if step == 0 {
                // Only bits at or after the cursor on the first pass.
                bits &= !0u64 << (self.cursor % 64);
            }
            if bits != 0 {
                let slot = (w as u32) * 64 + bits.trailing_zeros();
                if slot < self.slot_count {
                    self.take(slot);
                    self.cursor = (slot + 1) % self.slot_count;
                    return Some(slot);
                }
            }
        }
        None
    }

    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_free(n: u32) -> FreeSlots {
        let mut f = FreeSlots::all_used(n);
        for s in 0..n {
            f.release(s);
        }
        f
    }

    #[test]
    fn runs_and_singles() {
        let mut f = all_free(200);
        assert_eq!(f.take_run(3), Some(0));
        assert_eq!(f.take_one(Some(2)), Some(3));
        assert_eq!(f.take_one(None), Some(4));
        assert_eq!(f.free_count(), 195);
        f.release(1);
        assert_eq!(f.take_run(2), Some(5));
        assert_eq!(f.take_one(Some(0)), Some(1), "the slot after 0 was freed");
    }

    #[test]
    fn exhaustion_and_wraparound() {
        let mut f = all_free(130);
        for i in 0..130 {
            assert_eq!(f.take_one(None), Some(i));
        }
        assert_eq!(f.take_one(None), None);
        assert_eq!(f.take_run(1), None);
        f.release(5);
        f.release(129);
        assert_eq!(f.take_one(None), Some(5), "wraps to the start");
        assert_eq!(f.take_one(None), Some(129));
        for s in [70, 71, 72] {
            f.release(s);
        }
        assert_eq!(f.take_run(4), None);
        assert_eq!(f.take_run(3), Some(70));
    }

    #[test]
    fn fragmented_run_search_terminates() {
        let mut f = all_free(1000);
        for s in (0..1000).step_by(2) {
            assert!(f.take_exact(s));
        }
        assert_eq!(f.take_run(2), None);
        assert_eq!(f.free_count(), 500);
        assert!(f.take_run(1).is_some());
    }
}
