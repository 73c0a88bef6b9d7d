//! Element types of pages, including the block-quantized GGML formats kernels read
//! directly. Block sizes follow llama.cpp's `ggml-common.h`.

use std::fmt;

use crate::error::DTypeError;

/// The element type of a page. Quantized types store elements in fixed-size blocks.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    I8,
    /// 32 elements: f16 scale + 32 x i8 (34 bytes).
    Q8_0,
    /// 32 elements: f16 scale + 16 bytes of 4-bit quants (18 bytes).
    Q4_0,
    /// 32 elements: f16 scale, f16 min + 16 bytes of 4-bit quants (20 bytes).
    Q4_1,
    /// 32 elements: f16 scale, 4 bytes of high bits + 16 bytes of low nibbles (22 bytes).
    Q5_0,
    /// 256 elements: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins + 128 bytes of quants (144 bytes).
    Q4K,
    /// 256 elements: 128 bytes low 4 bits, 64 bytes high 2 bits, 16 i8 scales, f16 d (210 bytes).
    Q6K,
    /// 32 elements: f16 scale, f16 min, 4 bytes of high bits + 16 bytes of low nibbles (24 bytes).
    Q5_1,
    /// 256 elements: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes of high bits
    /// + 128 bytes of low nibbles (176 bytes).
    Q5K,
    /// 256 elements: f32 d + 256 x i8 + 16 x i16 sums of 16 quants (292 bytes). The
    /// activation format of the k-quant dot products; rarely a weight type.
    Q8K,
    /// Q4_0 repacked at load for the decode kernels: groups of 8 rows, per block index
    /// the 8 rows' f16 scales then their 16-byte quants (144 bytes per 8 blocks; the
    /// layout is specified in `vtpu_kernels::quant::r8`). Same size as Q4_0.
    Q4_0R8,
    /// Q5_0 repacked in groups of 8 rows (176 bytes per 8 blocks; see `Q4_0R8`).
    Q5_0R8,
    /// Q8_0 repacked in groups of 8 rows (272 bytes per 8 blocks; see `Q4_0R8`).
    Q8_0R8,
}

/// One row of the dtype table: the single list every property derives from.
struct Props {
    dtype: DType,
    name: &'static str,
    block_elems: usize,
    block_bytes: usize,
    /// Stable numeric code: the `ggml_type` id, so GGUF tensor types map directly.
    code: u8,
}

#[rustfmt::skip]
const TABLE: [Props; 17] = [
    Props { dtype: DType::F32, name: "f32", block_elems: 1, block_bytes: 4, code: 0 },
    Props { dtype: DType::F16, name: "f16", block_elems: 1, block_bytes: 2, code: 1 },
    Props { dtype: DType::BF16, name: "bf16", block_elems: 1, block_bytes: 2, code: 30 },
    Props { dtype: DType::I32, name: "i32", block_elems: 1, block_bytes: 4, code: 26 },
    Props { dtype: DType::I8, name: "i8", block_elems: 1, block_bytes: 1, code: 24 },
    Props { dtype: DType::Q8_0, name: "q8_0", block_elems: 32, block_bytes: 34, code: 8 },
    Props { dtype: DType::Q4_0, name: "q4_0", block_elems: 32, block_bytes: 18, code: 2 },
    Props { dtype: DType::Q4_1, name: "q4_1", block_elems: 32, block_bytes: 20, code: 3 },
    Props { dtype: DType::Q5_0, name: "q5_0", block_elems: 32, block_bytes: 22, code: 6 },
    Props { dtype: DType::Q4K, name: "q4_k", block_elems: 256, block_bytes: 144, code: 12 },
    Props { dtype: DType::Q6K, name: "q6_k", block_elems: 256, block_bytes: 210, code: 14 },
    Props { dtype: DType::Q5_1, name: "q5_1", block_elems: 32, block_bytes: 24, code: 7 },
    Props { dtype: DType::Q5K, name: "q5_k", block_elems: 256, block_bytes: 176, code: 13 },
    Props { dtype: DType::Q8K, name: "q8_k", block_elems: 256, block_bytes: 292, code: 15 },
    // Not ggml types: codes far above ggml's (and away from ik_llama.cpp's 2xx repacked
    // types, whose layouts differ); GGUF readers refuse them (`DType::is_repacked`).
    Props { dtype: DType::Q4_0R8, name: "q4_0r8", block_elems: 32, block_bytes: 18, code: 230 },
    Props { dtype: DType::Q5_0R8, name: "q5_0r8", block_elems: 32, block_bytes: 22, code: 231 },
    Props { dtype: DType::Q8_0R8, name: "q8_0r8", block_elems: 32, block_bytes: 34, code: 232 },
];

impl DType {
    /// Every dtype, in table order.
    pub const ALL: [DType; 17] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::I8,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q4K,
        DType::Q6K,
        DType::Q5_1,
        DType::Q5K,
        DType::Q8K,
        DType::Q4_0R8,
        DType::Q5_0R8,
        DType::Q8_0R8,
    ];

    fn props(&self) -> &'static Props {
        // The enum discriminant is the table index (checked by a test).
        &TABLE[*self as usize]
    }

    /// Lower-case name: "f32", "q4_k", ...
    pub fn name(&self) -> &'static str {
        self.props().name
    }

    /// Inverse of [`DType::name`] (exact, lower case).
    pub fn parse(s: &str) -> Option<DType> {
        TABLE.iter().find(|p| p.name == s).map(|p| p.dtype)
    }

    /// Elements per block (1 for plain types).
    pub fn block_elems(&self) -> usize {
        self.props().block_elems
    }

    /// Bytes per block.
    pub fn block_bytes(&self) -> usize {
        self.props().block_bytes
    }

    /// True for the block-quantized types.
    pub fn is_quantized(&self) -> bool {
        self.block_elems() > 1
    }

    /// A layout of this project's own: rows repacked in groups of 8 at load (not a
    /// ggml type; a model file claiming one is refused).
    pub fn is_repacked(&self) -> bool {
        matches!(self, DType::Q4_0R8 | DType::Q5_0R8 | DType::Q8_0R8)
    }

    /// The repacked (8-row) layout of this dtype, if the kernels have one.
    pub fn repacked(&self) -> Option<DType> {
        match self {
            DType::Q4_0 => Some(DType::Q4_0R8),
            DType::Q5_0 => Some(DType::Q5_0R8),
            DType::Q8_0 => Some(DType::Q8_0R8),
            _ => None,
        }
    }

    /// Bytes that `elems` elements occupy; an error when `elems` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(&self, elems: usize) -> Result<usize, DTypeError> {
        let block = self.block_elems();
        if !elems.is_multiple_of(block) {
            return Err(DTypeError::NotBlockMultiple {
                dtype: *self,
                elems,
                block,
            });
        }
        (elems / block)
            .checked_mul(self.block_bytes())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(DTypeError::Overflow {
                dtype: *self,
                elems,
            })
    }

    /// Stable numeric code for binary encodings (the `ggml_type` id).
    pub fn code(&self) -> u8 {
        self.props().code
    }

    /// Inverse of [`DType::code`].
    pub fn from_code(code: u8) -> Option<DType> {
        TABLE.iter().find(|p| p.code == code).map(|p| p.dtype)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_discriminant() {
        for (i, d) in DType::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].dtype, *d);
            assert_eq!(*d as usize, i);
        }
    }

    #[test]
    fn names_and_codes_round_trip_and_are_unique() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(d.to_string(), d.name());
        }
        let mut codes: Vec<u8> = DType::ALL.iter().map(|d| d.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DType::ALL.len());
        assert_eq!(DType::parse("F32"), None);
        assert_eq!(DType::parse("q4k"), None);
        assert_eq!(DType::from_code(255), None);
    }

    #[test]
    fn block_sizes_match_ggml() {
        let expect = [
            ("q8_0", 32, 34),
            ("q4_0", 32, 18),
            ("q4_1", 32, 20),
            ("q5_0", 32, 22),
            ("q4_k", 256, 144),
            ("q6_k", 256, 210),
            ("q5_1", 32, 24),
            ("q5_k", 256, 176),
            ("q8_k", 256, 292),
            ("f32", 1, 4),
            ("f16", 1, 2),
            ("bf16", 1, 2),
            ("i32", 1, 4),
            ("i8", 1, 1),
        ];
        for (name, elems, bytes) in expect {
            let d = DType::parse(name).unwrap();
            assert_eq!((d.block_elems(), d.block_bytes()), (elems, bytes), "{name}");
        }
    }

    /// Block sizes rebuilt from the field layouts of `ggml-common.h` (the same sums its
    /// `static_assert`s check), so a typo in the table cannot agree with a typo here.
    #[test]
    fn block_bytes_are_the_sum_of_their_fields() {
        let (half, qk, qk_k) = (2, 32, 256);
        let layouts = [
            (DType::Q8_0, half + qk),                             // d, qs[32]
            (DType::Q4_0, half + qk / 2),                         // d, qs[16]
            (DType::Q4_1, 2 * half + qk / 2),                     // d, m, qs[16]
            (DType::Q5_0, half + 4 + qk / 2),                     // d, qh[4], qs[16]
            (DType::Q5_1, 2 * half + 4 + qk / 2),                 // d, m, qh[4], qs[16]
            (DType::Q4K, 2 * half + 12 + qk_k / 2),               // d, dmin, scales, qs
            (DType::Q5K, 2 * half + 12 + qk_k / 8 + qk_k / 2),    // + qh[32]
            (DType::Q6K, qk_k / 2 + qk_k / 4 + qk_k / 16 + half), // ql, qh, scales, d
            (DType::Q8K, 4 + qk_k + 2 * (qk_k / 16)),             // f32 d, qs, i16 bsums
            // The 8-row repacked layouts: the same bytes per block, rearranged.
            (DType::Q4_0R8, half + qk / 2),
            (DType::Q5_0R8, half + 4 + qk / 2),
            (DType::Q8_0R8, half + qk),
        ];
        for (d, bytes) in layouts {
            assert_eq!(d.block_bytes(), bytes, "{d}");
            assert!(d.is_quantized());
            if let Some(r) = d.repacked() {
                assert_eq!(r.block_bytes(), d.block_bytes(), "{r} keeps {d}'s size");
                assert!(r.is_repacked() && !d.is_repacked());
            }
        }
        assert_eq!(
            DType::ALL.iter().filter(|d| d.is_quantized()).count(),
            layouts.len(),
            "every quantized dtype has a layout here"
        );
    }

    #[test]
    fn bytes_for_checks_blocks_and_overflow() {
        assert_eq!(DType::Q8_0.bytes_for(64).unwrap(), 68);
        assert_eq!(DType::Q6K.bytes_for(512).unwrap(), 420);
        assert_eq!(DType::F32.bytes_for(0).unwrap(), 0);
        let e = DType::Q4_0.bytes_for(33).unwrap_err();
        assert_eq!(
            e.to_string(),
            "33 elements of q4_0 is not a whole number of blocks of 32 elements"
        );
        assert!(matches!(
            DType::F32.bytes_for(usize::MAX / 2),
            Err(DTypeError::Overflow { .. })
        ));
    }
}
