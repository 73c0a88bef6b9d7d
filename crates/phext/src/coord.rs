//! Phext coordinates: nine 1-based parts `library.shelf.series/collection.volume.book/
//! chapter.section.scroll`, strict canonical parsing, and a packed `u128` key for the hot
//! path (translation cache, page table).

use std::fmt;
use std::str::FromStr;

use crate::error::{CoordError, ParseProblem};

/// The part limit other phext readers accept; every coordinate in a file obeys it.
pub const DEFAULT_PART_LIMIT: u32 = 999;
/// The largest part limit: 14 bits per part (part-1 < 2^14), so nine parts pack into a u128.
pub const MAX_PART_LIMIT: u32 = 16383;
/// Dimension names, most significant first (index = `dim` in the API).
pub const DIM_NAMES: [&str; 9] = [
    "library",
    "shelf",
    "series",
    "collection",
    "volume",
    "book",
    "chapter",
    "section",
    "scroll",
];

/// Bits per part in a [`CoordKey`].
pub const KEY_BITS_PER_PART: u32 = 14;
const PART_MASK: u128 = (1 << KEY_BITS_PER_PART) - 1;
/// Longest error-message echo of user text.
const ECHO_CHARS: usize = 64;

/// A phext coordinate. Parts are 1-based and at most [`MAX_PART_LIMIT`]; every constructor
/// checks them, so a `Coord` is always valid. Ordering is lexicographic by part (library
/// first), which equals the order of [`Coord::key`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Coord {
    parts: [u16; 9],
}

/// A coordinate packed into 126 bits: (part - 1) in 14 bits each, library most significant.
/// Comparing keys compares coordinates. The two top bits are always zero for a valid key, so
/// `CoordKey(u128::MAX)` never names a page (the translation cache uses it as "empty").
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CoordKey(pub u128);

impl Coord {
    /// The origin, `1.1.1/1.1.1/1.1.1`.
    pub const ORIGIN: Coord = Coord { parts: [1; 9] };

    /// A coordinate from nine 1-based parts, each `1..=DEFAULT_PART_LIMIT`.
    pub fn new(parts: [u32; 9]) -> Result<Coord, CoordError> {
        Coord::new_with_limit(parts, DEFAULT_PART_LIMIT)
    }

    /// A coordinate from nine 1-based parts, each `1..=limit` (`limit <= MAX_PART_LIMIT`).
    pub fn new_with_limit(parts: [u32; 9], limit: u32) -> Result<Coord, CoordError> {
        check_limit(limit)?;
        let mut out = [0u16; 9];
        for (dim, (&p, o)) in parts.iter().zip(out.iter_mut()).enumerate() {
            *o = checked_part(dim, i128::from(p), limit)?;
        }
        Ok(Coord { parts: out })
    }

    /// Strict parse of `a.b.c/d.e.f/g.h.i`, each part `1..=DEFAULT_PART_LIMIT`.
    pub fn parse(text: &str) -> Result<Coord, CoordError> {
        Coord::parse_with_limit(text, DEFAULT_PART_LIMIT)
    }

    /// Strict parse: exactly three '/'-separated groups of exactly three '.'-separated parts;
    /// only ASCII digits, no sign, whitespace, empty part or leading zero (canonical form
    /// only, so `parse(display(c)) == c` and text round-trips byte for byte); each part
    /// `1..=limit`.
    pub fn parse_with_limit(text: &str, limit: u32) -> Result<Coord, CoordError> {
        let fail = |problem| CoordError::Parse {
            text: echo(text),
            problem,
        };
        if !(1..=MAX_PART_LIMIT).contains(&limit) {
            return Err(fail(ParseProblem::BadLimit { limit }));
        }
        if text.is_empty() {
            return Err(fail(ParseProblem::Empty));
        }
        // Structure first, so the message describes the shape before the digits.
        let groups = text.split('/').count();
        if groups != 3 {
            return Err(fail(ParseProblem::GroupCount { found: groups }));
        }
        for (g, group) in text.split('/').enumerate() {
            let found = group.split('.').count();
            if found != 3 {
                return Err(fail(ParseProblem::PartCount {
                    group: g + 1,
                    found,
                }));
            }
        }
        let mut parts = [0u16; 9];
        let mut dim = 0usize;
        let mut start = 0usize; // byte offset of the current part in `text`
        for group in text.split('/') {
            for part in group.split('.') {
                let value = parse_part(part, dim, start, limit).map_err(fail)?;
                parts[dim] = value;
                dim += 1;
                start += part.len() + 1; // the '.' or '/' after it
            }
        }
        Ok(Coord { parts })
    }

    /// The nine parts, 1-based.
    pub fn parts(&self) -> [u32; 9] {
        self.parts.map(u32::from)
    }

    /// Part `dim` (0 = library .. 8 = scroll), or `None` when `dim >= 9`.
    pub fn part(&self, dim: usize) -> Option<u32> {
        self.parts.get(dim).map(|&p| u32::from(p))
    }

    /// The largest of the nine parts (what a part limit must cover).
    pub fn max_part(&self) -> u32 {
        self.parts.iter().copied().max().map_or(1, u32::from)
    }

    /// This coordinate with `part[dim] += delta`, checked: `dim < 9` and the result in
    /// `1..=limit`. Never wraps or clamps.
    pub fn offset(&self, dim: usize, delta: i64, limit: u32) -> Result<Coord, CoordError> {
        let current = self.part(dim).ok_or(CoordError::BadDim { dim })?;
        let value = i128::from(current) + i128::from(delta);
        self.with_part_i128(dim, value, limit)
    }

    /// The hot-path form of [`Coord::offset`] for callers that already know every part of
    /// `self` is within `limit` (e.g. an executor whose coordinate registers only ever
    /// hold coordinates checked against the same limit): only the moved part is checked.
    /// `None` when `dim >= 9` or the moved part leaves `1..=limit`; call [`Coord::offset`]
    /// then for the detailed error.
    #[inline]
    pub fn step(&self, dim: usize, delta: i64, limit: u32) -> Option<Coord> {
        let p = *self.parts.get(dim)?;
        let v = i64::from(p).checked_add(delta)?;
        if v < 1 || v > i64::from(limit.min(MAX_PART_LIMIT)) {
            return None;
        }
        let mut out = *self;
        out.parts[dim] = v as u16; // <= MAX_PART_LIMIT < 2^16
        Some(out)
    }

    /// This coordinate with `part[dim] = value`, checked like [`Coord::offset`].
    pub fn with_part(&self, dim: usize, value: i64, limit: u32) -> Result<Coord, CoordError> {
        if dim >= 9 {
            return Err(CoordError::BadDim { dim });
        }
        self.with_part_i128(dim, i128::from(value), limit)
    }

    #[inline]
    fn with_part_i128(&self, dim: usize, value: i128, limit: u32) -> Result<Coord, CoordError> {
        check_limit(limit)?;
        let mut out = *self;
        out.parts[dim] = checked_part(dim, value, limit)?;
        // The other parts must obey the limit too: a Coord built under a larger limit moved
        // under a smaller one is not silently accepted. One branch-free max on the hot
        // path (SINDEX runs this per word); the offending part is found only on error.
        if u32::from(out.parts.iter().copied().max().unwrap_or(1)) > limit {
            return Err(self.first_part_over(dim, limit));
        }
        Ok(out)
    }

    #[cold]
    fn first_part_over(&self, skip: usize, limit: u32) -> CoordError {
        let (d, p) = self
            .parts
            .iter()
            .enumerate()
            .find(|&(d, &p)| d != skip && u32::from(p) > limit)
            .map_or((skip, 0), |(d, &p)| (d, p));
        CoordError::PartOutOfRange {
            dim: d,
            value: i128::from(p),
            limit,
        }
    }

    /// The packed key: (part-1) in 14 bits each, library most significant. No allocation,
    /// a handful of shifts.
    #[inline]
    pub const fn key(&self) -> CoordKey {
        let mut k: u128 = 0;
        let mut i = 0;
        while i < 9 {
            k = (k << KEY_BITS_PER_PART) | (self.parts[i] as u128 - 1);
            i += 1;
        }
        CoordKey(k)
    }

    /// Inverse of [`Coord::key`]; rejects keys with the top two bits set or a part above
    /// [`MAX_PART_LIMIT`].
    pub fn from_key(key: CoordKey) -> Result<Coord, CoordError> {
        if key.0 >> (9 * KEY_BITS_PER_PART) != 0 {
            return Err(CoordError::BadKey {
                key: key.0,
                problem: "bits above bit 125 are set",
            });
        }
        let mut parts = [0u16; 9];
        for (i, p) in parts.iter_mut().enumerate() {
            let shift = KEY_BITS_PER_PART * (8 - i as u32);
            let field = ((key.0 >> shift) & PART_MASK) as u32; // < 2^14, fits
            if field + 1 > MAX_PART_LIMIT {
                return Err(CoordError::BadKey {
                    key: key.0,
                    problem: "a part field decodes above the maximum part limit 16383",
                });
            }
            *p = (field + 1) as u16;
        }
        Ok(Coord { parts })
    }

    /// The libphext form, for the file boundary.
    pub fn to_libphext(&self) -> libphext::phext::Coordinate {
        use libphext::phext::{Coordinate, XCoordinate, YCoordinate, ZCoordinate};
        let p = self.parts.map(usize::from);
        Coordinate {
            z: ZCoordinate {
                library: p[0],
                shelf: p[1],
                series: p[2],
            },
            y: YCoordinate {
                collection: p[3],
                volume: p[4],
                book: p[5],
            },
            x: XCoordinate {
                chapter: p[6],
                section: p[7],
                scroll: p[8],
            },
        }
    }

    /// From the libphext form, each part checked against `limit`.
    pub fn from_libphext(c: &libphext::phext::Coordinate, limit: u32) -> Result<Coord, CoordError> {
        check_limit(limit)?;
        let raw = [
            c.z.library,
            c.z.shelf,
            c.z.series,
            c.y.collection,
            c.y.volume,
            c.y.book,
            c.x.chapter,
            c.x.section,
            c.x.scroll,
        ];
        let mut parts = [0u16; 9];
        for (dim, (&r, p)) in raw.iter().zip(parts.iter_mut()).enumerate() {
            // usize always fits in i128.
            *p = checked_part(dim, r as i128, limit)?;
        }
        Ok(Coord { parts })
    }
}

impl Default for Coord {
    fn default() -> Coord {
        Coord::ORIGIN
    }
}

impl fmt::Display for Coord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.parts;
        write!(
            f,
            "{}.{}.{}/{}.{}.{}/{}.{}.{}",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
        )
    }
}

impl FromStr for Coord {
    type Err = CoordError;
    fn from_str(s: &str) -> Result<Coord, CoordError> {
        Coord::parse(s)
    }
}

impl CoordKey {
    /// The coordinate this key packs (see [`Coord::from_key`]).
    pub fn coord(self) -> Result<Coord, CoordError> {
        Coord::from_key(self)
    }
}

impl fmt::Display for CoordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Coord::from_key(*self) {
            Ok(c) => write!(f, "{c}"),
            Err(_) => write!(f, "<bad key {:#x}>", self.0),
        }
    }
}

impl From<Coord> for CoordKey {
    fn from(c: Coord) -> CoordKey {
        c.key()
    }
}

fn check_limit(limit: u32) -> Result<(), CoordError> {
    if (1..=MAX_PART_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(CoordError::BadLimit { limit })
    }
}

/// `value` as a part of dimension `dim` if it is in `1..=limit` (limit already checked).
fn checked_part(dim: usize, value: i128, limit: u32) -> Result<u16, CoordError> {
    if value >= 1 && value <= i128::from(limit) {
        // limit <= 16383, so this fits in u16.
        Ok(value as u16)
    } else {
        Err(CoordError::PartOutOfRange { dim, value, limit })
    }
}

/// One decimal part of a coordinate; `start` is its byte offset in the whole text.
fn parse_part(part: &str, dim: usize, start: usize, limit: u32) -> Result<u16, ParseProblem> {
    if part.is_empty() {
        return Err(ParseProblem::EmptyPart { dim });
    }
    if let Some((i, ch)) = part.char_indices().find(|(_, ch)| !ch.is_ascii_digit()) {
        return Err(ParseProblem::NotDigit {
            dim,
            byte_offset: start + i,
            found: ch,
        });
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(ParseProblem::LeadingZero {
            dim,
            text: echo(part),
        });
    }
    if part.len() > 19 {
        return Err(ParseProblem::TooLarge {
            dim,
            digits: part.len(),
        });
    }
    // At most 19 ASCII digits: fits in u64 without overflow.
    let value = part
        .bytes()
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    if value == 0 || value > u64::from(limit) {
        return Err(ParseProblem::OutOfRange { dim, value, limit });
    }
    Ok(value as u16)
}

/// User text for an error message, cut to [`ECHO_CHARS`] characters.
fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn step_matches_offset_when_other_parts_are_in_range() {
        let c = Coord::parse("3.1.1/1.1.1/1.1.998").unwrap();
        for (dim, delta) in [(8, 1), (8, 2), (0, -2), (0, -3), (4, 998), (4, 999), (9, 0)] {
            let step = c.step(dim, delta, 999);
            assert_eq!(
                step,
                c.offset(dim, delta, 999).ok(),
                "dim {dim} delta {delta}"
            );
        }
        assert_eq!(c.step(8, i64::MAX, 999), None);
    }

    use super::*;
    use proptest::prelude::*;

    fn arb_coord(limit: u32) -> impl Strategy<Value = Coord> {
        proptest::array::uniform9(1..=limit)
            .prop_map(move |p| Coord::new_with_limit(p, limit).expect("in range by construction"))
    }

    #[test]
    fn display_and_parse_canonical() {
        let c = Coord::new([1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert_eq!(c.to_string(), "1.2.3/4.5.6/7.8.9");
        assert_eq!(Coord::parse("1.2.3/4.5.6/7.8.9").unwrap(), c);
        assert_eq!("1.2.3/4.5.6/7.8.9".parse::<Coord>().unwrap(), c);
        assert_eq!(Coord::ORIGIN.to_string(), "1.1.1/1.1.1/1.1.1");
        assert_eq!(Coord::ORIGIN.key(), CoordKey(0));
    }

    #[test]
    fn parse_errors_name_what_and_where() {
        let msg = |t: &str| Coord::parse(t).unwrap_err().to_string();
        assert_eq!(
            msg("1.2/3.4.5/6.7.8"),
            "coordinate \"1.2/3.4.5/6.7.8\": group 1 has 2 parts, expected 3"
        );
        assert_eq!(
            msg("1.1.1/0.1.1/1.1.1"),
            "coordinate \"1.1.1/0.1.1/1.1.1\": part 4 (collection) is 0, must be 1..=999"
        );
        assert!(msg("1.1.1/1.1.1").contains("2 groups"));
        assert!(msg("1.1.1/1.1.1/1.1.1/1.1.1").contains("4 groups"));
        assert!(msg("1.1.1/1..1/1.1.1").contains("part 5 (volume) is empty"));
        assert!(msg("1.1.1/1.1.1/1.1.01").contains("leading zero"));
        assert!(msg("1.1.1/1.1.1/1.1.1000").contains("part 9 (scroll) is 1000"));
        assert!(msg("1.1.1/1.1.1/1.1.-1").contains("'-' at byte 16"));
        assert!(msg("+1.1.1/1.1.1/1.1.1").contains("part 1 (library)"));
        assert!(msg(" 1.1.1/1.1.1/1.1.1").contains("' '"));
        assert!(msg("1.1.1/1.1.1/1.1.1 ").contains("' '"));
        assert!(msg("").contains("empty"));
        assert!(msg("1.1.1;1.1.1;1.1.1").contains("1 groups"));
        assert!(msg("1.1.1/1.1.1/1.1.99999999999999999999999").contains("too large"));
        assert!(msg("1.1.1/1.1.1/1.1.é").contains("'é'"));
        let long = "9".repeat(500);
        assert!(msg(&long).len() < 200, "long input is cut in the message");
    }

    #[test]
    fn limits() {
        assert!(Coord::parse_with_limit("1.1.1/1.1.1/1.1.16383", MAX_PART_LIMIT).is_ok());
        assert!(Coord::parse_with_limit("1.1.1/1.1.1/1.1.16384", MAX_PART_LIMIT).is_err());
        assert!(Coord::parse_with_limit("1.1.1/1.1.1/1.1.1", 0).is_err());
        assert!(Coord::parse_with_limit("1.1.1/1.1.1/1.1.1", 16384).is_err());
        assert!(Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 1000]).is_err());
        assert!(Coord::new_with_limit([1; 9], 0).is_err());
        assert_eq!(
            Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 0])
                .unwrap_err()
                .to_string(),
            "part 9 (scroll) is 0, must be 1..=999"
        );
    }

    #[test]
    fn offset_and_with_part_are_checked() {
        let c = Coord::parse("1.1.1/1.1.1/1.1.5").unwrap();
        assert_eq!(c.offset(8, 3, 999).unwrap().part(8), Some(8));
        assert_eq!(c.offset(8, -4, 999).unwrap().part(8), Some(1));
        assert!(c.offset(8, -5, 999).is_err());
        assert!(c.offset(8, 995, 999).is_err());
        assert!(c.offset(9, 1, 999).is_err());
        assert!(c.offset(8, i64::MIN, 999).is_err());
        assert!(c.offset(8, i64::MAX, 999).is_err());
        assert_eq!(c.with_part(0, 7, 999).unwrap().part(0), Some(7));
        assert!(c.with_part(0, 0, 999).is_err());
        assert!(c.with_part(9, 1, 999).is_err());
        let big = Coord::new_with_limit([2000, 1, 1, 1, 1, 1, 1, 1, 1], 16383).unwrap();
        assert!(
            big.offset(8, 1, 999).is_err(),
            "other parts obey the limit too"
        );
        assert_eq!(c.part(9), None);
    }

    #[test]
    fn libphext_round_trip() {
        let c = Coord::parse("3.1.4/1.5.9/2.6.5").unwrap();
        let l = c.to_libphext();
        assert_eq!(l.to_string(), "3.1.4/1.5.9/2.6.5");
        assert_eq!(Coord::from_libphext(&l, 999).unwrap(), c);
        let mut bad = l;
        bad.x.scroll = 0;
        assert!(Coord::from_libphext(&bad, 999).is_err());
        bad.x.scroll = usize::MAX;
        assert!(Coord::from_libphext(&bad, 999).is_err());
    }

    #[test]
    fn bad_keys() {
        assert!(Coord::from_key(CoordKey(u128::MAX)).is_err());
        assert!(
            Coord::from_key(CoordKey(PART_MASK)).is_err(),
            "scroll field 16383 -> part 16384"
        );
        assert_eq!(Coord::from_key(CoordKey(1)).unwrap().part(8), Some(2));
    }

    proptest! {
        #[test]
        fn parse_display_round_trip(c in arb_coord(MAX_PART_LIMIT)) {
            let text = c.to_string();
            prop_assert_eq!(Coord::parse_with_limit(&text, MAX_PART_LIMIT).unwrap(), c);
        }

        #[test]
        fn key_round_trip(c in arb_coord(MAX_PART_LIMIT)) {
            prop_assert_eq!(Coord::from_key(c.key()).unwrap(), c);
        }

        #[test]
        fn key_order_is_part_order(a in arb_coord(20), b in arb_coord(20)) {
            prop_assert_eq!(a.key().cmp(&b.key()), a.parts().cmp(&b.parts()));
            prop_assert_eq!(a.cmp(&b), a.parts().cmp(&b.parts()));
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,40}") {
            let _ = Coord::parse(&s);
        }

        #[test]
        fn near_miss_garbage_never_panics(s in "[0-9./;+ -]{0,30}") {
            if let Ok(c) = Coord::parse(&s) {
                prop_assert_eq!(c.to_string(), s, "only canonical text parses");
            }
        }

        #[test]
        fn random_keys_never_panic(k in any::<u128>()) {
            if let Ok(c) = Coord::from_key(CoordKey(k)) {
                prop_assert_eq!(c.key().0, k);
            }
        }
    }
}
