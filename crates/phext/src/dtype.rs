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
const TABLE: [Props; 11] = [
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
];

impl DType {
    /// Every dtype, in table order.
    pub const ALL: [DType; 11] = [
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

    /// Bytes that `elems` elements occupy; an error when `elems` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(&self, elems: usize) -> Result<usize, DTypeError> {
        let block = self.block_elems();
        if elems % block != 0 {
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
