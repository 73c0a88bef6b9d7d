//! Byte-level BPE (`tokenizer.ggml.model` = "gpt2"), as llama.cpp's
//! `llm_tokenizer_bpe_session` does it: pre-tokenize into words, map each word's bytes to
//! the GPT-2 alphabet, then repeatedly merge the adjacent pair with the best (lowest)
//! merge rank, leftmost first on ties.
//!
//! Strings are interned: every token text and every merge's left, right and joined
//! string get an id (tokens keep theirs; other strings get ids past the vocabulary), and
//! merges become a map `(left id, right id) -> (rank, joined id)`. A symbol carries the id
//! of its text, so finding a pair's rank is one hash lookup and no string is built while
//! merging. The result equals llama.cpp's string-keyed lookups because a symbol's text
//! determines its id and vice versa.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use crate::hash::FxHashMap;
use crate::pretok::{PreConfig, PreTokenizer, PreTokenizerKind};
use crate::unicode::ByteLevel;
use crate::vocab::Vocab;

/// "No string id" (the text is neither a token nor part of a merge).
const NONE: u32 = u32::MAX;

pub(crate) struct BpeModel {
    pub(crate) kind: PreTokenizerKind,
    pre: PreTokenizer,
    /// A word that is itself a token skips merging (Llama 3 style vocabularies).
    ignore_merges: bool,
    /// `left << 32 | right` -> (rank, id of the joined string).
    merges: FxHashMap<u64, (u32, u32)>,
    /// String id of each byte's alphabet character.
    byte_sym: [u32; 256],
    /// Token whose text is the single byte `b` (only ASCII can be one).
    single_byte: [Option<u32>; 256],
}

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl BpeModel {
    /// Interns the merge strings into `strings` (ids from `n_tokens` up) and builds the
    /// pair table. A merge line without a separating space is skipped; when a pair is
    /// listed twice the first (best) rank wins, like llama.cpp's `emplace`.
    pub(crate) fn new(
        cfg: PreConfig,
        merges: &[String],
        strings: &mut FxHashMap<Box<[u8]>, u32>,
        n_tokens: u32,
    ) -> BpeModel {
        let mut next_id = n_tokens;
        let mut intern = |s: &[u8]| -> u32 {
            if let Some(&id) = strings.get(s) {
                return id;
            }
            let id = next_id;
            next_id += 1;
            strings.insert(s.into(), id);
            id
        };
        let mut table: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
        table.reserve(merges.len());
        let mut joined = Vec::new();
        for (rank, line) in merges.iter().enumerate() {
            let b = line.as_bytes();
            // The separator is the first space after the first byte.
            let Some(sep) = b.iter().skip(1).position(|&c| c == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&b[..sep], &b[sep + 1..]);
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let (l, r, j) = (intern(left), intern(right), intern(&joined));
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            table.entry(pair_key(l, r)).or_insert((rank, j));
        }
        let bl = ByteLevel::get();
        let mut byte_sym = [NONE; 256];
        let mut single_byte = [None; 256];
        for b in 0..=255u8 {
            let mut buf = [0u8; 4];
            let s = bl.char_of(b).encode_utf8(&mut buf);
            byte_sym[usize::from(b)] = strings.get(s.as_bytes()).copied().unwrap_or(NONE);
            single_byte[usize::from(b)] = strings.get(&[b][..]).copied().filter(|&i| i < n_tokens);
        }
        BpeModel {
            kind: cfg.kind,
            pre: PreTokenizer::new(cfg.kind),
            ignore_merges: cfg.ignore_merges,
            merges: table,
            byte_sym,
            single_byte,
        }
    }

    /// Appends the tokens of `text` (one text fragment) to `out`. `words` is scratch.
    pub(crate) fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        words: &mut Vec<Range<usize>>,
        out: &mut Vec<u32>,
    ) {
        words.clear();
        self.pre.split(text, words);
        let mut scratch = Scratch::default();
        for w in words.iter() {
            self.encode_word(vocab, &text.as_bytes()[w.clone()], &mut scratch, out);
        }
    }

    fn encode_word(&self, vocab: &Vocab, word: &[u8], sc: &mut Scratch, out: &mut Vec<u32>) {
        let bl = ByteLevel::get();
        if self.ignore_merges {
            sc.encoded.clear();
            for &b in word {
                let mut buf = [0u8; 4];
                sc.encoded
                    .extend_from_slice(bl.char_of(b).encode_utf8(&mut buf).as_bytes());
            }
            if let Some(id) = vocab.text_to_token(&sc.encoded) {
                out.push(id);
                return;
            }
        }

        // One symbol per byte (each byte is one alphabet character).
        let n = word.len();
        let syms = &mut sc.syms;
        syms.clear();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                start: i as u32,
                len: 1,
                id: self.byte_sym[usize::from(b)],
                prev: if i == 0 { NONE } else { i as u32 - 1 },
                next: if i + 1 == n { NONE } else { i as u32 + 1 },
            });
        }
        let heap = &mut sc.heap;
        heap.clear();
        for i in 1..n {
            self.push_pair(syms, heap, i as u32 - 1, i as u32);
        }
        while let Some(Reverse((key, right, size, joined))) = heap.pop() {
            let left = (key & 0xFFFF_FFFF) as u32;
            let (l, r) = (syms[left as usize], syms[right as usize]);
            // Stale entries: a side was merged away or grew since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue;
            }
            let ls = &mut syms[left as usize];
            ls.len += r.len;
            ls.id = joined;
            ls.next = r.next;
            syms[right as usize].len = 0;
            if r.next != NONE {
                syms[r.next as usize].prev = left;
            }
            self.push_pair(syms, heap, l.prev, left);
            self.push_pair(syms, heap, left, r.next);
        }

        for s in syms.iter().filter(|s| s.len > 0) {
            if s.id < vocab.n_tokens {
                out.push(s.id);
                continue;
            }
            // Not a token: emit the single-byte tokens among its alphabet bytes, dropping
            // the rest, exactly as llama.cpp does.
            for &b in &word[s.start as usize..(s.start + s.len) as usize] {
                let mut buf = [0u8; 4];
                for &eb in bl.char_of(b).encode_utf8(&mut buf).as_bytes() {
                    out.extend(self.single_byte[usize::from(eb)]);
                }
            }
        }
    }

    #[inline]
    fn push_pair(
        &self,
        syms: &[Sym],
        heap: &mut BinaryHeap<Reverse<(u64, u32, u32, u32)>>,
        left: u32,
        right: u32,
    ) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (syms[left as usize], syms[right as usize]);
        if l.id == NONE || r.id == NONE {
            return;
        }
        if let Some(&(rank, joined)) = self.merges.get(&pair_key(l.id, r.id)) {
            // Ordered by rank, then by position: the leftmost of equal ranks first.
            heap.push(Reverse((
                (u64::from(rank) << 32) | u64::from(left),
                right,
                l.len + r.len,
                joined,
            )));
        }
    }
}

/// A run of bytes of the word, linked to its neighbours.
#[derive(Clone, Copy, Debug)]
struct Sym {
    start: u32,
    len: u32,
    /// String id of the symbol's text (`NONE` if it has none).
    id: u32,
    prev: u32,
    next: u32,
}

/// Buffers reused across the words of one call.
#[derive(Default)]
struct Scratch {
    syms: Vec<Sym>,
    /// `(rank << 32 | left, right, joined length, joined id)`, min-heap.
    heap: BinaryHeap<Reverse<(u64, u32, u32, u32)>>,
    encoded: Vec<u8>,
}
