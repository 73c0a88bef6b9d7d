//! Hand-written splitters for the pre-tokenizer regexes llama.cpp does not hand to
//! `std::regex` (it recognises their exact text and runs dedicated code instead).
//!
//! Each one walks the codepoints of a fragment and emits word lengths. They reproduce
//! llama.cpp's splitting decisions, including where those differ from a literal regex
//! engine (e.g. `\s+(?!\S)` at the very end of a fragment takes the whole run), because
//! token ids must match llama.cpp's, not the regex's.
//!
//! Positions are codepoint indices into the whole text; a fragment is `ini..end`, and a
//! position outside it reads as "no codepoint" (`OUT` / `CpFlags::NONE`).

use super::CodepointText;
use crate::unicode::CpFlags;

const OUT: u32 = u32::MAX;

/// One fragment of the text being split, plus the word-length output.
struct Walker<'a> {
    text: &'a CodepointText,
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl<'a> Walker<'a> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.text.cps[pos]
        } else {
            OUT
        }
    }

    #[inline]
    fn flags(&self, pos: usize) -> CpFlags {
        if self.ini <= pos && pos < self.end {
            self.text.flags[pos]
        } else {
            CpFlags::NONE
        }
    }

    /// Ends the current word at `end` (nothing is emitted for an empty word).
    #[inline]
    fn emit(&mut self, end: usize) {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
    }
}

/// Which regex a splitter stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Custom {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// As `Llama3` with `\p{N}` (one digit per word).
    Qwen2,
    /// As `Qwen2` with letter runs `[\p{L}\p{M}]+` and marks excluded from punctuation.
    Qwen35,
}

impl Custom {
    /// Splits every fragment in `offsets` (lengths in codepoints, covering the text) and
    /// appends the word lengths to `out`.
    pub(crate) fn split(self, text: &CodepointText, offsets: &[usize], out: &mut Vec<usize>) {
        let mut start = 0;
        for &len in offsets {
            let mut w = Walker {
                text,
                ini: start,
                end: start + len,
                prev_end: start,
                out,
            };
            match self {
                Custom::Gpt2 => gpt2(&mut w),
                Custom::Llama3 => llama3_like(&mut w, Digits::UpTo3, false),
                Custom::Qwen2 => llama3_like(&mut w, Digits::One, false),
                Custom::Qwen35 => llama3_like(&mut w, Digits::One, true),
            }
            start += len;
        }
    }
}

/// `'s|'t|'m|'d` (2 codepoints) or `'re|'ve|'ll` (3), compared after `fold`; returns the
/// contraction's length.
#[inline]
fn contraction(w: &Walker<'_>, pos: usize, fold: fn(u32) -> u32) -> Option<usize> {
    if w.cpt(pos) != u32::from(b'\'') || pos + 1 >= w.end {
        return None;
    }
    let next = fold(w.cpt(pos + 1));
    if [b's', b't', b'm', b'd']
        .iter()
        .any(|&c| next == u32::from(c))
    {
        return Some(2);
    }
    if pos + 2 < w.end {
        let next2 = fold(w.cpt(pos + 2));
        let pair = |a: u8, b: u8| next == u32::from(a) && next2 == u32::from(b);
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return Some(3);
        }
    }
    None
}

fn exact(cp: u32) -> u32 {
    cp
}

/// Lowercasing for the case-insensitive contractions. Among all codepoints only ASCII
/// `A-Z` lowercase (by the simple Unicode mapping) to one of `s t m d r v e l`, so ASCII
/// folding decides exactly what full Unicode folding would.
fn ascii_lower(cp: u32) -> u32 {
    if (u32::from(b'A')..=u32::from(b'Z')).contains(&cp) {
        cp + 32
    } else {
        cp
    }
}

/// Not whitespace, letter or number, and a codepoint at all: `[^\s\p{L}\p{N}]`.
#[inline]
fn is_other(f: CpFlags) -> bool {
    !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some()
}

fn gpt2(w: &mut Walker<'_>) {
    let mut pos = w.ini;
    while pos < w.end {
        let cpt = w.cpt(pos);
        let flags = w.flags(pos);

        if let Some(n) = contraction(w, pos, exact) {
            pos += n;
            w.emit(pos);
            continue;
        }

        let is_space = cpt == u32::from(b' ');
        // ` ?X+`: an optional leading space, judged by the class of what follows it.
        let mut f2 = if is_space { w.flags(pos + 1) } else { flags };
        if f2.is_letter() {
            pos += usize::from(is_space);
            while f2.is_letter() {
                pos += 1;
                f2 = w.flags(pos);
            }
            w.emit(pos);
            continue;
        }
        if f2.is_number() {
            pos += usize::from(is_space);
            while f2.is_number() {
                pos += 1;
                f2 = w.flags(pos);
            }
            w.emit(pos);
            continue;
        }
        if is_other(f2) {
            pos += usize::from(is_space);
            while is_other(f2) {
                pos += 1;
                f2 = w.flags(pos);
            }
            w.emit(pos);
            continue;
        }

        let mut n_ws = 0;
        while w.flags(pos + n_ws).is_whitespace() {
            n_ws += 1;
        }
        // `\s+(?!\S)`: leave the last space for the next word, unless the run ends the
        // fragment (then nothing follows and llama.cpp takes it all).
        if n_ws > 1 && w.cpt(pos + n_ws) != OUT {
            pos += n_ws - 1;
            w.emit(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            w.emit(pos);
            continue;
        }
        // No alternative matched: a word of one codepoint.
        pos += 1;
        w.emit(pos);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Digits {
    /// `\p{N}{1,3}`
    UpTo3,
    /// `\p{N}`
    One,
}

/// Llama 3, Qwen2 and Qwen3.5 share this shape; they differ in digit grouping and in
/// whether combining marks belong to letter runs (`marks`).
fn llama3_like(w: &mut Walker<'_>, digits: Digits, marks: bool) {
    let is_cr_lf = |cp: u32| cp == u32::from(b'\r') || cp == u32::from(b'\n');
    let is_word = |f: CpFlags| f.is_letter() || (marks && f.is_mark());
    let mut pos = w.ini;
    while pos < w.end {
        let cpt = w.cpt(pos);
        let flags = w.flags(pos);

        if let Some(n) = contraction(w, pos, ascii_lower) {
            pos += n;
            w.emit(pos);
            continue;
        }

        // `[^\r\n\p{L}\p{N}]?\p{L}+`: one leading non-letter, non-digit (not CR/LF),
        // then letters.
        if !(is_cr_lf(cpt) || flags.is_number()) && (is_word(flags) || is_word(w.flags(pos + 1))) {
            pos += 1;
            while is_word(w.flags(pos)) {
                pos += 1;
            }
            w.emit(pos);
            continue;
        }

        if flags.is_number() {
            match digits {
                Digits::One => {
                    pos += 1;
                    w.emit(pos);
                }
                Digits::UpTo3 => {
                    let mut group_start = pos;
                    while w.flags(pos).is_number() {
                        pos += 1;
                        if pos - group_start >= 3 {
                            w.emit(pos);
                            group_start = pos;
                        }
                    }
                    w.emit(pos);
                }
            }
            continue;
        }

        // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (marks excluded too when they join letters). The
        // entry test looks at the current codepoint's presence, the loop at the next
        // one's, exactly as llama.cpp does.
        let is_space = cpt == u32::from(b' ');
        let other = |f: CpFlags| {
            !(f.is_whitespace() || f.is_letter() || f.is_number() || (marks && f.is_mark()))
        };
        let mut f2 = if is_space { w.flags(pos + 1) } else { flags };
        if other(f2) && flags.is_some() {
            pos += usize::from(is_space);
            while other(f2) && f2.is_some() {
                pos += 1;
                f2 = w.flags(pos);
            }
            while is_cr_lf(w.cpt(pos)) {
                pos += 1;
            }
            w.emit(pos);
            continue;
        }

        let mut n_ws = 0;
        let mut last_cr_lf_end = 0;
        while w.flags(pos + n_ws).is_whitespace() {
            if is_cr_lf(w.cpt(pos + n_ws)) {
                last_cr_lf_end = pos + n_ws + 1;
            }
            n_ws += 1;
        }
        // `\s*[\r\n]+`: whitespace up to and including the last CR/LF of the run.
        if last_cr_lf_end > 0 {
            pos = last_cr_lf_end;
            w.emit(pos);
            continue;
        }
        // `\s+(?!\S)`
        if n_ws > 1 && w.cpt(pos + n_ws) != OUT {
            pos += n_ws - 1;
            w.emit(pos);
            continue;
        }
        // `\s+`
        if n_ws > 0 {
            pos += n_ws;
            w.emit(pos);
            continue;
        }
        pos += 1;
        w.emit(pos);
    }
}
