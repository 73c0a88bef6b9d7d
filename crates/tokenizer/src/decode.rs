//! Ids back to bytes: token pieces, llama.cpp's detokenizer, and a streaming decoder
//! that never splits a UTF-8 sequence across two outputs.

use crate::attr;
use crate::unicode::ByteLevel;
use crate::vocab::Vocab;

/// Bytes of a byte-level BPE token text: each alphabet character back to its byte. A
/// character outside the alphabet cannot come from a real vocabulary; llama.cpp renders
/// it as `[UNK_BYTE_0x..<text>]` and so does this, to stay byte-identical.
pub(crate) fn byte_level_decode(text: &str) -> Vec<u8> {
    let bl = ByteLevel::get();
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match bl.byte_of(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The byte of a `<0xAB>` byte token: the hex digits at offset 3 (`strtol` semantics:
/// leading hex digits of at most two characters, 0 when there are none).
pub(crate) fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// Options of [`Vocab::detokenize`], as in `llama_detokenize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetokenizeOptions {
    /// Drop a leading BOS and a trailing EOS when the vocabulary adds them.
    pub remove_special: bool,
    /// Render control and unknown tokens as their text.
    pub unparse_special: bool,
}

impl Vocab {
    /// The bytes of `id`; control and unknown tokens are empty unless `render_special`.
    /// An id outside the vocabulary is empty too.
    pub(crate) fn piece(&self, id: u32, render_special: bool) -> &[u8] {
        let Some(p) = self.pieces.get(id as usize) else {
            return &[];
        };
        if !render_special && self.attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        p
    }

    /// llama.cpp's `llama_detokenize`: pieces joined, the SentencePiece leading space
    /// removed, and (for vocabularies that ask for it) spaces before punctuation and
    /// contractions tidied.
    pub(crate) fn detokenize(&self, ids: &[u32], opts: DetokenizeOptions) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if opts.remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.ids.bos) {
                if first == bos {
                    remove_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if opts.remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.ids.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut text = Vec::new();
        for &id in ids {
            let mut p = self.piece(id, opts.unparse_special);
            if remove_space {
                if let Some(rest) = p.strip_prefix(b" ") {
                    p = rest;
                }
            }
            remove_space = false;
            text.extend_from_slice(p);
        }
        if self.clean_spaces {
            clean_spaces(&mut text);
        }
        text
    }
}

/// llama.cpp's three clean-up passes over detokenized text: drop the space before
/// `? ! . ,`; turn ` ' ` into `'`; drop the space before `'s 'm 're 've`.
fn clean_spaces(text: &mut Vec<u8>) {
    // Pass 1: " ?", " !", " .", " ,".
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: a lone apostrophe between spaces loses both spaces. llama.cpp works in
    // place and overwrites the dropped following space with NUL, so that byte no longer
    // counts as a space for the next apostrophe (`skipped`).
    let t = std::mem::take(&mut out);
    let mut i = 0;
    let mut skipped = usize::MAX;
    while i < t.len() {
        let x = t[i];
        let prev_is_space = i > 0 && i - 1 != skipped && t[i - 1] == b' ';
        if x == b'\'' && prev_is_space && i + 1 < t.len() && t[i + 1] == b' ' {
            out.pop();
            out.push(x);
            skipped = i + 1;
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" lose the space.
    let t = std::mem::take(&mut out);
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || (i + 2 < t.len()
                    && ((x1 == b'r' && x2 == Some(b'e')) || (x1 == b'v' && x2 == Some(b'e'))));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

/// Turns a stream of byte pieces into text, holding back an incomplete UTF-8 sequence
/// at the end until the bytes that complete it arrive. Invalid bytes become U+FFFD.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Adds `bytes` and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let keep = incomplete_tail(&self.pending);
        let done = self.pending.len() - keep;
        let text = String::from_utf8_lossy(&self.pending[..done]).into_owned();
        self.pending.drain(..done);
        text
    }

    /// Ends the stream: whatever is held back, as text (an unfinished sequence becomes
    /// U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }

    /// Bytes held back.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// Length of the trailing bytes of `b` that begin a UTF-8 sequence still missing bytes
/// (0 if `b` ends on a boundary or with bytes that can never become valid).
fn incomplete_tail(b: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look at most 3 bytes back for its lead byte.
    for back in 1..=b.len().min(3) {
        let lead = b[b.len() - back];
        if lead & 0xC0 == 0x80 {
            continue; // continuation byte, keep looking for the lead
        }
        let need = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        if back >= need {
            return 0;
        }
        // Complete only if what we have so far can still be a valid prefix.
        let tail = &b[b.len() - back..];
        return if std::str::from_utf8(tail)
            .err()
            .is_some_and(|e| e.error_len().is_none())
        {
            back
        } else {
            0
        };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_holds_back_split_sequences() {
        let mut s = Utf8Stream::new();
        let bytes = "a€😀".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "a"); // 'a' + first byte of '€'
        assert_eq!(s.push(&bytes[2..3]), "");
        assert_eq!(s.push(&bytes[3..5]), "€");
        assert_eq!(s.push(&bytes[5..]), "😀");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn stream_replaces_invalid_bytes_without_waiting() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[b'x', 0xFF]), "x\u{FFFD}");
        // A lead byte followed by a non-continuation cannot complete: emitted now.
        assert_eq!(s.push(&[0xE2, b'y']), "\u{FFFD}y");
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn clean_spaces_matches_llama_cpp_rules() {
        let mut t = b"Hello , world ! I 'm here ' ok 'd".to_vec();
        clean_spaces(&mut t);
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "Hello, world! I'm here'ok 'd"
        );
    }

    #[test]
    fn byte_token_values() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xFF>"), 255);
        assert_eq!(byte_token_value("<0x4>"), 4);
        assert_eq!(byte_token_value("<>"), 0);
    }
}
