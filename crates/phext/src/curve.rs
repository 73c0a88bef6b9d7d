//! Placement orders for pages: space-filling curves over the nine coordinate parts, so that
//! coordinate neighbours become memory neighbours. Whether that helps is measured by the
//! benches, not assumed.

use std::fmt;

use crate::coord::{Coord, KEY_BITS_PER_PART};

/// How a space orders (and, for placed spaces, lays out) its pages.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub enum Layout {
    /// No curve. Placement: the order pages were given in. Listing and saving: coordinate
    /// (lexicographic) order.
    #[default]
    Insertion,
    /// Morton order: the bits of the nine (part-1) values interleaved.
    ZOrder,
    /// 9-D Hilbert order (Skilling's transpose algorithm).
    Hilbert,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::Insertion, Layout::ZOrder, Layout::Hilbert];

    /// "insertion", "zorder" or "hilbert".
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Insertion => "insertion",
            Layout::ZOrder => "zorder",
            Layout::Hilbert => "hilbert",
        }
    }

    /// Inverse of [`Layout::name`].
    pub fn parse(s: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Stable numeric code (sidecar header).
    pub fn code(&self) -> u8 {
        match self {
            Layout::Insertion => 0,
            Layout::ZOrder => 1,
            Layout::Hilbert => 2,
        }
    }

    /// Inverse of [`Layout::code`].
    pub fn from_code(code: u8) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The sort key of `c` in this layout's order (Insertion: the coordinate key, i.e.
    /// coordinate order).
    pub fn order_key(&self, c: &Coord) -> u128 {
        match self {
            Layout::Insertion => c.key().0,
            Layout::ZOrder => zorder_key(c),
            Layout::Hilbert => hilbert_key(c),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const BITS: u32 = KEY_BITS_PER_PART;
const DIMS: usize = 9;

/// The nine (part - 1) values, each < 2^14.
fn axes(c: &Coord) -> [u32; DIMS] {
    c.parts().map(|p| p - 1)
}

/// Interleave: for each bit level from the top, one bit of each axis, axis 0 (library)
/// most significant. 9 x 14 = 126 bits.
fn interleave(x: &[u32; DIMS]) -> u128 {
    let mut out: u128 = 0;
    for level in (0..BITS).rev() {
        for &v in x {
            out = (out << 1) | u128::from((v >> level) & 1);
        }
    }
    out
}

/// Z-order (Morton) key: the bits of the nine (part-1) values interleaved, 14 bits each,
/// library most significant within each bit level.
pub fn zorder_key(c: &Coord) -> u128 {
    interleave(&axes(c))
}

/// 9-D Hilbert index of the (part-1) values, 14 bits per dimension. John Skilling,
/// "Programming the Hilbert curve" (AIP Conf. Proc. 707, 2004): convert the axes to the
/// "transpose" form in place, then interleave its bits. Consecutive indices are points
/// that differ by exactly 1 in exactly one part.
pub fn hilbert_key(c: &Coord) -> u128 {
    let mut x = axes(c);
    let m: u32 = 1 << (BITS - 1);
    // Inverse undo: walk the bit levels from the top, reflecting and exchanging axes.
    let mut q = m;
    while q > 1 {
        let p = q - 1;
        for i in 0..DIMS {
            if x[i] & q != 0 {
                x[0] ^= p; // invert low bits of axis 0
            } else {
                let t = (x[0] ^ x[i]) & p; // exchange low bits of axes 0 and i
                x[0] ^= t;
                x[i] ^= t;
            }
        }
        q >>= 1;
    }
    // Gray encode.
    for i in 1..DIMS {
        x[i] ^= x[i - 1];
    }
    let mut t = 0;
    let mut q = m;
    while q > 1 {
        if x[DIMS - 1] & q != 0 {
            t ^= q - 1;
        }
        q >>= 1;
    }
    for v in &mut x {
        *v ^= t;
    }
    interleave(&x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every coordinate with parts in 1..=side (side a power of two).
    fn grid(side: u32) -> Vec<Coord> {
        let n = (side as usize).pow(9);
        (0..n)
            .map(|mut i| {
                let mut parts = [0u32; 9];
                for p in parts.iter_mut().rev() {
                    *p = (i % side as usize) as u32 + 1;
                    i /= side as usize;
                }
                Coord::new(parts).unwrap()
            })
            .collect()
    }

    fn neighbours(a: &Coord, b: &Coord) -> bool {
        let diffs: Vec<u32> = a
            .parts()
            .iter()
            .zip(b.parts())
            .map(|(x, y)| x.abs_diff(y))
            .filter(|&d| d != 0)
            .collect();
        diffs == [1]
    }

    fn check_hilbert_grid(side: u32) {
        let mut cells: Vec<(u128, Coord)> = grid(side)
            .into_iter()
            .map(|c| (hilbert_key(&c), c))
            .collect();
        cells.sort_unstable_by_key(|&(k, _)| k);
        // The grid at the origin is the first side^9 cells of the curve, each index once.
        for (i, (k, _)) in cells.iter().enumerate() {
            assert_eq!(
                *k, i as u128,
                "grid of side {side} is not a prefix of the curve"
            );
        }
        for w in cells.windows(2) {
            assert!(
                neighbours(&w[0].1, &w[1].1),
                "Hilbert indices {} and {} map to {} and {}, not neighbours",
                w[0].0,
                w[1].0,
                w[0].1,
                w[1].1
            );
        }
    }

    #[test]
    fn hilbert_consecutive_indices_are_neighbours_side_2() {
        check_hilbert_grid(2);
    }

    #[test]
    fn hilbert_consecutive_indices_are_neighbours_side_4() {
        check_hilbert_grid(4); // 262,144 cells
    }

    #[test]
    fn zorder_is_bit_interleaving() {
        let c = Coord::new([2, 1, 1, 1, 1, 1, 1, 1, 1]).unwrap();
        assert_eq!(
            zorder_key(&c),
            1 << 8,
            "library bit 0 sits above the other 8 axes"
        );
        let s = Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 2]).unwrap();
        assert_eq!(zorder_key(&s), 1);
        let s3 = Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 3]).unwrap();
        assert_eq!(zorder_key(&s3), 1 << 9);
        assert_eq!(zorder_key(&Coord::ORIGIN), 0);
        assert_eq!(hilbert_key(&Coord::ORIGIN), 0);
    }

    #[test]
    fn names_and_codes() {
        for l in Layout::ALL {
            assert_eq!(Layout::parse(l.name()), Some(l));
            assert_eq!(Layout::from_code(l.code()), Some(l));
        }
        assert_eq!(Layout::parse("z-order"), None);
    }

    proptest! {
        #[test]
        fn curve_keys_are_injective(a in proptest::array::uniform9(1u32..=16383),
                                    b in proptest::array::uniform9(1u32..=16383)) {
            let ca = Coord::new_with_limit(a, 16383).unwrap();
            let cb = Coord::new_with_limit(b, 16383).unwrap();
            prop_assert_eq!(zorder_key(&ca) == zorder_key(&cb), ca == cb);
            prop_assert_eq!(hilbert_key(&ca) == hilbert_key(&cb), ca == cb);
            prop_assert!(hilbert_key(&ca) < 1u128 << 126);
        }
    }
}
