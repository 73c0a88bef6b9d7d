//! Runtime CPU dispatch: which instruction-set level the kernels run at.
//!
//! The best level the CPU supports is detected once (std's `is_x86_feature_detected!`,
//! cached in a `OnceLock`). The process-wide level starts as that, or as the level named
//! by the `VTPU_KERNELS` environment variable (`scalar`, `avx2`, `avx512`) read at first
//! use, and can be changed with [`set_level`]. A level the CPU lacks is never selected:
//! requests are clamped down to the best supported level, so a forced level can never
//! execute an illegal instruction.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Instruction-set level of the kernels, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelLevel {
    /// Portable Rust: the scalar references of `scalar.rs`, slow but obviously right.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Haswell / Zen 1 and later), 8 f32 lanes.
    Avx2,
    /// x86-64 AVX-512 F + BW + VL, plus FMA and F16C (Skylake-X / Zen 4 and later), 16 lanes.
    Avx512,
}

impl KernelLevel {
    /// Every level, least capable first.
    pub const ALL: [KernelLevel; 3] = [KernelLevel::Scalar, KernelLevel::Avx2, KernelLevel::Avx512];

    /// The name used by `VTPU_KERNELS` and in reports: `scalar`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::Avx512 => "avx512",
        }
    }

    /// Parses a level name as accepted by `VTPU_KERNELS` (case-insensitive).
    pub fn from_name(name: &str) -> Option<KernelLevel> {
        KernelLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> KernelLevel {
        match v {
            2 => KernelLevel::Avx512,
            1 => KernelLevel::Avx2,
            _ => KernelLevel::Scalar,
        }
    }
}

impl std::fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports, detected once per process.
pub fn detected() -> KernelLevel {
    static DETECTED: OnceLock<KernelLevel> = OnceLock::new();
    *DETECTED.get_or_init(detect_cpu)
}

#[cfg(target_arch = "x86_64")]
fn detect_cpu() -> KernelLevel {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl");
    if avx512 {
        KernelLevel::Avx512
    } else if avx2 {
        KernelLevel::Avx2
    } else {
        KernelLevel::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_cpu() -> KernelLevel {
    KernelLevel::Scalar
}

/// Whether this CPU can run kernels at `level`.
pub fn is_supported(level: KernelLevel) -> bool {
    level <= detected()
}

/// The best supported level that is not above `level`.
pub fn clamp(level: KernelLevel) -> KernelLevel {
    level.min(detected())
}

const UNSET: u8 = u8::MAX;
/// The level chosen by [`set_level`], or `UNSET` for "the initial level".
static FORCED: AtomicU8 = AtomicU8::new(UNSET);

/// The level at first use: `VTPU_KERNELS` if set (clamped to what the CPU supports),
/// else the detected level. An unknown value is reported once on stderr and ignored,
/// rather than silently running something the user did not ask for without a word.
fn initial() -> KernelLevel {
    static INITIAL: OnceLock<KernelLevel> = OnceLock::new();
    *INITIAL.get_or_init(|| match std::env::var("VTPU_KERNELS") {
        Ok(v) if !v.trim().is_empty() => match KernelLevel::from_name(&v) {
            Some(l) => clamp(l),
            None => {
                eprintln!(
                    "vtpu-kernels: ignoring VTPU_KERNELS={v:?} (expected scalar, avx2 or avx512); using {}",
                    detected()
                );
                detected()
            }
        },
        _ => detected(),
    })
}

/// The process-wide kernel level used by the free functions of this crate.
pub fn level() -> KernelLevel {
    match FORCED.load(Ordering::Relaxed) {
        UNSET => initial(),
        v => KernelLevel::from_u8(v),
    }
}

/// Forces the process-wide kernel level (for tests and benchmarks). The request is
/// clamped to what the CPU supports; returns the level actually in effect.
pub fn set_level(level: KernelLevel) -> KernelLevel {
    let effective = clamp(level);
    FORCED.store(effective.to_u8(), Ordering::Relaxed);
    effective
}

/// Whether this CPU has AVX-512 BF16 (`vdpbf16ps`, `vcvtne2ps2bf16`) on top of the
/// AVX-512 level: what the bf16-products matmul needs. Detected once.
pub fn has_avx512_bf16() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            detected() == KernelLevel::Avx512 && is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The bf16-products request set by [`set_bf16_products`], or `UNSET`.
static BF16_PRODUCTS: AtomicU8 = AtomicU8::new(UNSET);

/// The bf16-products request at first use: `VTPU_BF16_PRODUCTS=1` (or `on`) asks for it;
/// anything else, or unset, leaves the exact f32-activation products.
fn initial_bf16_products() -> bool {
    static INITIAL: OnceLock<bool> = OnceLock::new();
    *INITIAL.get_or_init(|| {
        std::env::var("VTPU_BF16_PRODUCTS").is_ok_and(|v| {
            let v = v.trim();
            v == "1" || v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("true")
        })
    })
}

/// Whether [`crate::Kernels`] built from now on ask for bf16 products with bf16 weights
/// (see [`crate::Kernels::with_bf16_products`]): the process-wide default.
pub fn bf16_products() -> bool {
    match BF16_PRODUCTS.load(Ordering::Relaxed) {
        UNSET => initial_bf16_products(),
        v => v != 0,
    }
}

/// Sets the process-wide bf16-products default (for benchmarks and the command line);
/// it applies to [`crate::Kernels`] values built afterwards, not to existing ones.
pub fn set_bf16_products(on: bool) {
    BF16_PRODUCTS.store(u8::from(on), Ordering::Relaxed);
}
