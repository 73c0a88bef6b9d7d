//! The prompt cache's store: KV snapshots of sequences that no slot holds any more,
//! kept in host memory within a byte budget, least recently used dropped first.
//!
//! A sequence whose tokens are a prefix of another entry's is redundant (the longer
//! entry's first rows are the same positions), so the store keeps only maximal
//! sequences: inserting drops the entries the new one extends, and a sequence another
//! entry already extends only refreshes that entry.

use crate::engine::KvSnap;

/// One cached sequence: its tokens and the KV of exactly those positions.
#[derive(Clone, Debug)]
pub struct Entry {
    pub tokens: Vec<u32>,
    pub snap: KvSnap,
    pub last_used: u64,
}

impl Entry {
    pub fn bytes(&self) -> usize {
        self.snap.bytes() + 4 * self.tokens.len()
    }
}

/// Length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Cached sequences within `budget` bytes.
#[derive(Debug, Default)]
pub struct Store {
    entries: Vec<Entry>,
    budget: usize,
    bytes: usize,
}

impl Store {
    pub fn new(budget: usize) -> Store {
        Store {
            entries: Vec::new(),
            budget,
            bytes: 0,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether some entry already holds `tokens` (as itself or as a prefix).
    pub fn covers(&self, tokens: &[u32]) -> bool {
        self.entries
            .iter()
            .any(|e| e.tokens.len() >= tokens.len() && e.tokens[..tokens.len()] == *tokens)
    }

    /// The entry sharing the longest prefix with `prompt`: (index, length).
    pub fn longest_prefix(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(i, n)| (n, self.entries[i].last_used))
    }

    pub fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)
    }

    pub fn touch(&mut self, i: usize, now: u64) {
        if let Some(e) = self.entries.get_mut(i) {
            e.last_used = now;
        }
    }

    /// Adds a sequence (see the module note on prefixes); evicts the least recently
    /// used entries beyond the budget. An entry larger than the whole budget is not kept.
    /// Returns whether it was kept.
    pub fn insert(&mut self, entry: Entry) -> bool {
        if entry.tokens.is_empty() {
            return false;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| {
            e.tokens.len() >= entry.tokens.len() && e.tokens[..entry.tokens.len()] == *entry.tokens
        }) {
            e.last_used = e.last_used.max(entry.last_used);
            return true;
        }
        if entry.bytes() > self.budget {
            return false;
        }
        let t = &entry.tokens;
        self.entries
            .retain(|e| !(e.tokens.len() < t.len() && t[..e.tokens.len()] == *e.tokens));
        self.entries.push(entry);
        self.recount();
        while self.bytes > self.budget {
            let Some((i, _)) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            else {
                break;
            };
            self.entries.swap_remove(i);
            self.recount();
        }
        true
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn recount(&mut self) {
        self.bytes = self.entries.iter().map(Entry::bytes).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtpu_phext::DType;

    fn entry(tokens: &[u32], bytes_per_pos: usize, t: u64) -> Entry {
        Entry {
            tokens: tokens.to_vec(),
            snap: KvSnap {
                pos: tokens.len(),
                dtype: DType::F32,
                model_fingerprint: 1,
                pages: vec![vec![0u8; bytes_per_pos * tokens.len()]],
            },
            last_used: t,
        }
    }

    #[test]
    fn prefixes_are_merged_and_longest_prefix_found() {
        let mut s = Store::new(1 << 20);
        assert!(s.insert(entry(&[1, 2, 3], 4, 1)));
        // Extends the first: replaces it.
        assert!(s.insert(entry(&[1, 2, 3, 4, 5], 4, 2)));
        assert_eq!(s.entries().len(), 1);
        // Already covered: only refreshed.
        assert!(s.insert(entry(&[1, 2], 4, 9)));
        assert_eq!(s.entries().len(), 1);
        assert_eq!(s.entries()[0].last_used, 9);
        assert!(s.insert(entry(&[7, 8], 4, 3)));
        assert_eq!(s.longest_prefix(&[1, 2, 3, 9]), Some((0, 3)));
        assert_eq!(s.longest_prefix(&[7, 8, 1]).map(|x| x.1), Some(2));
        assert_eq!(s.longest_prefix(&[5]), None);
        assert!(s.covers(&[1, 2, 3, 4]));
        assert!(!s.covers(&[1, 2, 4]));
    }

    #[test]
    fn least_recently_used_goes_first_within_the_budget() {
        // Each entry: 10 positions x 100 bytes + 40 bytes of tokens = 1040 bytes.
        let mut s = Store::new(3000);
        for (k, t) in [(0u32, 5u64), (100, 1), (200, 7)] {
            let toks: Vec<u32> = (k..k + 10).collect();
            s.insert(entry(&toks, 100, t));
        }
        // 3 x 1040 > 3000: the entry used at t=1 went.
        assert_eq!(s.entries().len(), 2);
        assert!(s.bytes() <= 3000);
        assert!(s.longest_prefix(&[100, 101]).is_none());
        assert!(s.longest_prefix(&[0, 1]).is_some());
        // Larger than the whole budget: refused, nothing evicted.
        let big: Vec<u32> = (500..540).collect();
        assert!(!s.insert(entry(&big, 100, 99)));
        assert_eq!(s.entries().len(), 2);
    }
}
