//! SentencePiece-style BPE (`tokenizer.ggml.model` = "llama"), as llama.cpp's
//! `llm_tokenizer_spm_session` does it: spaces become `▁`, the text starts as one symbol
//! per character, and the adjacent pair whose concatenation is the token with the
//! highest score merges first (leftmost on ties). Characters left without a token are
//! emitted as byte tokens (`<0xAB>`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::hash::FxHashMap;
use crate::vocab::Vocab;

const NONE: u32 = u32::MAX;

pub(crate) struct SpmModel {
    /// Token for each byte value: `<0xAB>`, else the one-byte text, as llama.cpp's
    /// `byte_to_token` tries them.
    byte_tok: [Option<u32>; 256],
}

impl SpmModel {
    pub(crate) fn new(strings: &FxHashMap<Box<[u8]>, u32>, n_tokens: u32) -> SpmModel {
        let mut byte_tok = [None; 256];
        for b in 0..=255u8 {
            let hex = format!("<0x{b:02X}>");
            let find = |s: &[u8]| strings.get(s).copied().filter(|&i| i < n_tokens);
            byte_tok[usize::from(b)] = find(hex.as_bytes()).or_else(|| find(&[b]));
        }
        SpmModel { byte_tok }
    }

    /// Appends the tokens of `text` (a fragment, with its optional leading space already
    /// added) to `out`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let escaped = text.replace(' ', "\u{2581}");
        let bytes = escaped.as_bytes();

        let mut syms: Vec<Sym> = Vec::with_capacity(escaped.len());
        let n_chars = escaped.chars().count();
        for (i, (start, c)) in escaped.char_indices().enumerate() {
            syms.push(Sym {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: if i == 0 { NONE } else { i as u32 - 1 },
                next: if i + 1 == n_chars { NONE } else { i as u32 + 1 },
            });
        }

        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], left: u32, right: u32| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (syms[left as usize], syms[right as usize]);
            // Adjacent symbols are contiguous, so their concatenation is a slice.
            let joined = &bytes[l.start as usize..(r.start + r.len) as usize];
            if let Some(id) = vocab.text_to_token(joined) {
                heap.push(Bigram {
                    score: vocab.scores[id as usize],
                    left,
                    right,
                    size: l.len + r.len,
                });
            }
        };
        for i in 1..syms.len() {
            push(&mut heap, &syms, i as u32 - 1, i as u32);
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (syms[bg.left as usize], syms[bg.right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue;
            }
            syms[bg.left as usize].len += r.len;
            syms[bg.left as usize].next = r.next;
            syms[bg.right as usize].len = 0;
            if r.next != NONE {
                syms[r.next as usize].prev = bg.left;
            }
            push(&mut heap, &syms, l.prev, bg.left);
            push(&mut heap, &syms, bg.left, r.next);
        }

        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            let s = syms[i as usize];
            let piece = &bytes[s.start as usize..(s.start + s.len) as usize];
            match vocab.text_to_token(piece) {
                Some(id) => out.push(id),
                None => {
                    for &b in piece {
                        // llama.cpp throws when a byte has no token; falling back to the
                        // unknown token (or dropping the byte) keeps encoding total.
                        out.extend(self.byte_tok[usize::from(b)].or(vocab.ids.unk));
                    }
                }
            }
            i = s.next;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sym {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge, ordered best first for the max-heap: higher score, then smaller
/// left index.
#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // NaN scores compare equal, as with the C++ comparator's `<`.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}
