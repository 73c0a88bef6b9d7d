//! The ggml tensor types a GGUF file can hold, written once as data.
//!
//! Each row: variant = stable id, display name, elements per block, bytes per block.
//! Block layouts follow llama.cpp's `ggml-common.h` (checked against its `static_assert`s
//! on the block structs); ids follow `enum ggml_type` in `ggml.h`. Ids that ggml
//! retired (4, 5, 31..=33, 36..=38) are deliberately absent, so a file using them is
//! rejected like any unknown id.

macro_rules! ggml_types {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $block_elems:literal, $block_bytes:literal; )*) => {
        /// A ggml tensor element type. `GgmlType::ALL` lists every one this crate knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        #[repr(u32)]
        pub enum GgmlType {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl GgmlType {
            /// Every known type, in id order.
            pub const ALL: &'static [GgmlType] = &[$( GgmlType::$variant, )*];

            /// The type with ggml id `id`, if this crate knows it.
            pub fn from_id(id: u32) -> Option<GgmlType> {
                match id {
                    $( $id => Some(GgmlType::$variant), )*
                    _ => None,
                }
            }

            /// The display name, as gguf-py spells it (`Q8_0`, `Q4_K`, `BF16`).
            pub fn name(self) -> &'static str {
                match self {
                    $( GgmlType::$variant => $name, )*
                }
            }

            /// Elements in one block (1 for plain types).
            pub fn block_elems(self) -> u64 {
                match self {
                    $( GgmlType::$variant => $block_elems, )*
                }
            }

            /// Bytes in one block.
            pub fn block_bytes(self) -> u64 {
                match self {
                    $( GgmlType::$variant => $block_bytes, )*
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, "F32", 1, 4;
    F16 = 1, "F16", 1, 2;
    /// f16 scale + 32 x 4-bit.
    Q4_0 = 2, "Q4_0", 32, 18;
    /// f16 scale, f16 min + 32 x 4-bit.
    Q4_1 = 3, "Q4_1", 32, 20;
    Q5_0 = 6, "Q5_0", 32, 22;
    Q5_1 = 7, "Q5_1", 32, 24;
    /// f16 scale + 32 x i8.
    Q8_0 = 8, "Q8_0", 32, 34;
    Q8_1 = 9, "Q8_1", 32, 36;
    Q2_K = 10, "Q2_K", 256, 84;
    Q3_K = 11, "Q3_K", 256, 110;
    Q4_K = 12, "Q4_K", 256, 144;
    Q5_K = 13, "Q5_K", 256, 176;
    Q6_K = 14, "Q6_K", 256, 210;
    Q8_K = 15, "Q8_K", 256, 292;
    IQ2_XXS = 16, "IQ2_XXS", 256, 66;
    IQ2_XS = 17, "IQ2_XS", 256, 74;
    IQ3_XXS = 18, "IQ3_XXS", 256, 98;
    IQ1_S = 19, "IQ1_S", 256, 50;
    IQ4_NL = 20, "IQ4_NL", 32, 18;
    IQ3_S = 21, "IQ3_S", 256, 110;
    IQ2_S = 22, "IQ2_S", 256, 82;
    IQ4_XS = 23, "IQ4_XS", 256, 136;
    I8 = 24, "I8", 1, 1;
    I16 = 25, "I16", 1, 2;
    I32 = 26, "I32", 1, 4;
    I64 = 27, "I64", 1, 8;
    F64 = 28, "F64", 1, 8;
    IQ1_M = 29, "IQ1_M", 256, 56;
    BF16 = 30, "BF16", 1, 2;
    TQ1_0 = 34, "TQ1_0", 256, 54;
    TQ2_0 = 35, "TQ2_0", 256, 66;
    /// E8M0 shared exponent + 32 x fp4.
    MXFP4 = 39, "MXFP4", 32, 17;
    /// 4 x UE4M3 scales + 64 x fp4.
    NVFP4 = 40, "NVFP4", 64, 36;
    /// f16 scale + 128 x 1-bit.
    Q1_0 = 41, "Q1_0", 128, 18;
    /// f16 scale + 64 x 2-bit.
    Q2_0 = 42, "Q2_0", 64, 18;
}

impl GgmlType {
    /// The ggml id stored in the file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// True for block-quantized types (more than one element per block).
    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bytes of one row of `ne0` elements, or `None` when `ne0` is not a whole number of
    /// blocks or the size overflows.
    pub fn row_bytes(self, ne0: u64) -> Option<u64> {
        if !ne0.is_multiple_of(self.block_elems()) {
            return None;
        }
        (ne0 / self.block_elems()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
