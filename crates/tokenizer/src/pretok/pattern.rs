//! The pre-tokenizer regexes llama.cpp runs through `std::regex`, reproduced as small
//! matchers.
//!
//! llama.cpp does not match these against the text itself: when a regex uses `\p{..}`
//! it first "collapses" the text, replacing every non-ASCII codepoint by one byte that
//! stands for its category (and non-ASCII whitespace by `\v`), and rewrites `\p{L}` as
//! `[<letter byte>A-Za-z]` and so on. Regexes without `\p{..}` run on the codepoints,
//! again with non-ASCII whitespace replaced by `\v`. `\s` is the C locale's ASCII
//! whitespace in both cases. [`Class`] encodes those two views:
//! - `Cats`: collapsed classes; a codepoint is in the class iff its category is one of
//!   `cats` or it is one of the listed ASCII characters. (For ASCII this equals the
//!   rewritten ranges: `0-9` are exactly the ASCII numbers, and so on.)
//! - `Ranges`: literal codepoint ranges on the whitespace-substituted codepoints.
//!
//! Every regex needed here is one of three shapes, all without alternation, so
//! leftmost-first search is simple and linear: `X{min,max}`, `\s?X+` and `\s+$`.

use super::CodepointText;
use crate::unicode::CpFlags;

#[derive(Clone, Debug)]
pub(crate) enum Class {
    Cats { cats: u16, ascii: &'static [u8] },
    Ranges(Vec<(u32, u32)>),
}

impl Class {
    /// A class written as regex bracket contents (`a-zé一-龥`): single codepoints and
    /// `x-y` ranges, with `\r`/`\n` escapes. Ranges are sorted for binary search.
    pub(crate) fn parse_brackets(body: &str) -> Class {
        let cps: Vec<u32> = {
            let mut v = Vec::new();
            let mut it = body.chars();
            while let Some(c) = it.next() {
                let cp = if c == '\\' {
                    match it.next() {
                        Some('r') => u32::from(b'\r'),
                        Some('n') => u32::from(b'\n'),
                        Some(other) => u32::from(other),
                        None => u32::from('\\'),
                    }
                } else {
                    u32::from(c)
                };
                v.push(cp);
            }
            v
        };
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < cps.len() {
            if i + 2 < cps.len() && cps[i + 1] == u32::from(b'-') {
                // The bodies are constants of this crate; a reversed range would be a
                // typo (std::regex rejects it), so it is caught by the tests.
                debug_assert!(cps[i] <= cps[i + 2], "reversed range in class {body:?}");
                ranges.push((cps[i], cps[i + 2]));
                i += 3;
            } else {
                ranges.push((cps[i], cps[i]));
                i += 1;
            }
        }
        ranges.sort_unstable();
        // Merge overlaps so a binary search on starts finds the one candidate range.
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Class::Ranges(merged)
    }

    #[inline]
    fn contains(&self, cp: u32, f: CpFlags) -> bool {
        match self {
            Class::Cats { cats, ascii } => {
                f.category() & cats != 0 || (cp < 128 && ascii.iter().any(|&a| u32::from(a) == cp))
            }
            Class::Ranges(ranges) => {
                let cp = if cp > 0x7F && f.is_whitespace() {
                    0x0B
                } else {
                    cp
                };
                let i = ranges.partition_point(|&(a, _)| a <= cp);
                i > 0 && ranges[i - 1].1 >= cp
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Pattern {
    /// `X{min,max}`, greedy (`usize::MAX` = unbounded).
    Run {
        class: Class,
        min: usize,
        max: usize,
    },
    /// `\s?X+`
    OptSpaceRun { class: Class },
    /// `\s+$`: the whitespace that ends the fragment.
    TrailingSpace,
}

impl Pattern {
    pub(crate) fn plus(class: Class) -> Pattern {
        Pattern::Run {
            class,
            min: 1,
            max: usize::MAX,
        }
    }

    pub(crate) fn one(class: Class) -> Pattern {
        Pattern::Run {
            class,
            min: 1,
            max: 1,
        }
    }

    /// Splits every fragment like `std::regex_iterator` would: each match is a word, and
    /// so is each unmatched gap between matches.
    pub(crate) fn split(&self, text: &CodepointText, offsets: &[usize], out: &mut Vec<usize>) {
        let mut start = 0;
        for &len in offsets {
            let end = start + len;
            let mut pos = start;
            while let Some((m0, m1)) = self.find(text, pos, end) {
                if m0 > pos {
                    out.push(m0 - pos);
                }
                out.push(m1 - m0);
                pos = m1;
            }
            if pos < end {
                out.push(end - pos);
            }
            start = end;
        }
    }

    /// The leftmost match in `from..end`, as a codepoint range. Never empty.
    fn find(&self, t: &CodepointText, from: usize, end: usize) -> Option<(usize, usize)> {
        let is = |class: &Class, i: usize| i < end && class.contains(t.cps[i], t.flags[i]);
        let is_space = |i: usize| i < end && t.flags[i].is_whitespace();
        match self {
            Pattern::Run { class, min, max } => {
                let mut i = from;
                while i < end {
                    let mut n = 0;
                    while n < *max && is(class, i + n) {
                        n += 1;
                    }
                    if n >= *min && n > 0 {
                        return Some((i, i + n));
                    }
                    // A run shorter than `min` starting at i: no start inside it can do
                    // better, so resume after it.
                    i += n + 1;
                }
                None
            }
            Pattern::OptSpaceRun { class } => {
                for i in from..end {
                    let first = if is_space(i) && is(class, i + 1) {
                        i + 1
                    } else if is(class, i) {
                        i
                    } else {
                        continue;
                    };
                    let mut j = first;
                    while is(class, j) {
                        j += 1;
                    }
                    return Some((i, j));
                }
                None
            }
            Pattern::TrailingSpace => {
                let mut i = end;
                while i > from && t.flags[i - 1].is_whitespace() {
                    i -= 1;
                }
                (i < end).then_some((i, end))
            }
        }
    }
}
