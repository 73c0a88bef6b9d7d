//! Codepoint classes as llama.cpp's pre-tokenizers see them, and the GPT-2 byte <-> unicode
//! table of byte-level BPE.
//!
//! The category table is generated (see `scripts/gen_unicode_tables.py`) from the same
//! Unicode version llama.cpp's table was built from, so `\p{L}`, `\p{N}`, ... agree with
//! it codepoint for codepoint.

// Generated data: kept as the generator writes it.
#[rustfmt::skip]
mod tables;

use std::sync::OnceLock;

use tables::CATEGORY_RANGES;

/// Category flag bits (one per codepoint), as in llama.cpp's `unicode_cpt_flags`.
pub(crate) const UNDEFINED: u16 = 0x01;
pub(crate) const NUMBER: u16 = 0x02;
pub(crate) const LETTER: u16 = 0x04;
#[cfg(test)]
pub(crate) const SEPARATOR: u16 = 0x08;
pub(crate) const MARK: u16 = 0x10;
pub(crate) const PUNCTUATION: u16 = 0x20;
#[cfg(test)]
pub(crate) const SYMBOL: u16 = 0x40;
#[cfg(test)]
pub(crate) const CONTROL: u16 = 0x80;
/// Not a category: the codepoint is in `\s` (Unicode White_Space).
pub(crate) const WHITESPACE: u16 = 0x100;

/// Classes of one codepoint. `CpFlags::NONE` (all zero) stands for "no codepoint here"
/// (a position outside the fragment being split); every real codepoint has exactly one
/// category bit set, so `is_some()` tells the two apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct CpFlags(u16);

impl CpFlags {
    pub(crate) const NONE: CpFlags = CpFlags(0);

    #[inline]
    pub(crate) fn is_some(self) -> bool {
        self.0 != 0
    }
    #[inline]
    pub(crate) fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    #[inline]
    pub(crate) fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    #[inline]
    pub(crate) fn is_mark(self) -> bool {
        self.0 & MARK != 0
    }
    #[inline]
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    /// The category bit alone (`UNDEFINED` ... `CONTROL`).
    #[inline]
    pub(crate) fn category(self) -> u16 {
        self.0 & 0xFF
    }
}

/// White_Space codepoints (PropList.txt), the set llama.cpp uses for `\s`.
fn is_white_space(cp: u32) -> bool {
    matches!(cp, 0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029
        | 0x202F | 0x205F | 0x3000)
}

fn category_of(cp: u32) -> u16 {
    // Ranges are sorted by start and the first starts at 0, so the containing range is
    // the last one whose start is <= cp.
    let i = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
    match i.checked_sub(1).and_then(|i| CATEGORY_RANGES.get(i)) {
        Some(&(_, flag)) => u16::from(flag),
        None => UNDEFINED,
    }
}

/// Flags of `cp`. ASCII comes from a small table; everything else is a binary search
/// over ~2300 ranges (about 12 probes), cheap next to the BPE merges that follow.
#[inline]
pub(crate) fn flags(cp: u32) -> CpFlags {
    static ASCII: OnceLock<[u16; 128]> = OnceLock::new();
    if cp < 128 {
        let table = ASCII.get_or_init(|| {
            let mut t = [0u16; 128];
            for (cp, slot) in (0u32..).zip(t.iter_mut()) {
                *slot = slow_flags(cp);
            }
            t
        });
        return CpFlags(table[cp as usize]);
    }
    CpFlags(slow_flags(cp))
}

fn slow_flags(cp: u32) -> u16 {
    let ws = if is_white_space(cp) { WHITESPACE } else { 0 };
    category_of(cp) | ws
}

/// The GPT-2 byte-level alphabet: bytes that are printable Latin-1 map to themselves,
/// the other 68 bytes map, in order, to U+0100.. . BPE vocabularies store token text in
/// this alphabet (a space is `Ġ`, a newline `Ċ`).
pub(crate) struct ByteLevel {
    to_char: [char; 256],
    /// Inverse of `to_char`, indexed by codepoint (all of them are below `REV_LEN`).
    from_char: [Option<u8>; REV_LEN],
}

/// 256 bytes, 68 of them moved up by 256 at most: every alphabet char is below U+0144.
const REV_LEN: usize = 0x144;

impl ByteLevel {
    pub(crate) fn get() -> &'static ByteLevel {
        static TABLE: OnceLock<ByteLevel> = OnceLock::new();
        TABLE.get_or_init(|| {
            let printable = |b: u32| {
                (0x21..=0x7E).contains(&b)
                    || (0xA1..=0xAC).contains(&b)
                    || (0xAE..=0xFF).contains(&b)
            };
            let mut to_char = ['\0'; 256];
            let mut from_char = [None; REV_LEN];
            let mut next = 256u32;
            for (b, slot) in (0u8..=255).zip(to_char.iter_mut()) {
                let cp = if printable(u32::from(b)) {
                    u32::from(b)
                } else {
                    next += 1;
                    next - 1
                };
                // All values are below U+0144, valid scalar values.
                *slot = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                if let Some(r) = from_char.get_mut(cp as usize) {
                    *r = Some(b);
                }
            }
            ByteLevel { to_char, from_char }
        })
    }

    /// The alphabet character that stands for byte `b`.
    #[inline]
    pub(crate) fn char_of(&self, b: u8) -> char {
        self.to_char[usize::from(b)]
    }

    /// The byte that alphabet character `c` stands for, if it is one.
    #[inline]
    pub(crate) fn byte_of(&self, c: char) -> Option<u8> {
        self.from_char.get(c as usize).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_known_codepoints() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('Z' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert_eq!(flags(' ' as u32).category(), SEPARATOR);
        assert_eq!(flags('\n' as u32).category(), CONTROL);
        assert_eq!(flags('$' as u32).category(), SYMBOL);
        assert_eq!(flags('!' as u32).category(), PUNCTUATION);
        assert!(flags(0x00E9).is_letter()); // é
        assert!(flags(0x0301).is_mark()); // combining acute
        assert!(flags(0x0663).is_number()); // Arabic-Indic three
        assert!(flags(0x4E00).is_letter()); // CJK
        assert!(flags(0x3000).is_whitespace());
        assert_eq!(flags(0x1F999).category(), SYMBOL); // 🦙
        assert_eq!(flags(0x0378).category(), UNDEFINED); // unassigned
        assert_eq!(flags(0x10FFFF).category(), UNDEFINED);
        assert_eq!(flags(0xE000).category(), CONTROL); // private use
                                                       // Assigned in Unicode 15.1 (llama.cpp's table version), unassigned before.
        assert_eq!(flags(0x2FFC).category(), SYMBOL);
        assert!(flags(0).is_some());
        assert!(!CpFlags::NONE.is_some());
    }

    #[test]
    fn byte_level_alphabet_round_trips() {
        let bl = ByteLevel::get();
        assert_eq!(bl.char_of(b' '), 'Ġ');
        assert_eq!(bl.char_of(b'\n'), 'Ċ');
        assert_eq!(bl.char_of(b'a'), 'a');
        // The soft hyphen is the last of the 68 remapped bytes: U+0100 + 67.
        assert_eq!(bl.char_of(0xAD), '\u{143}');
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = bl.char_of(b);
            assert!(seen.insert(c), "byte {b} maps to a duplicate char");
            assert_eq!(bl.byte_of(c), Some(b));
        }
        assert_eq!(bl.byte_of(' '), None);
        assert_eq!(bl.byte_of('€'), None);
    }
}
