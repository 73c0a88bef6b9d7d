//! Dense sweep of the transcendental kernels over every f32 bit pattern in their
//! interesting ranges (every `stride`-th one), reporting the largest ulp distance from the
//! f64 reference at each level: the evidence behind `tolerance::EXP_MAX_ULP`,
//! `SILU_MAX_ULP` and `RSQRT_MAX_ULP`.
//!
//! `cargo run --release -p vtpu-kernels --example exp_sweep [stride]` (default stride 1:
//! exhaustive, about a minute per level on one Zen 4 core).

use vtpu_kernels::tolerance::{ulp_diff, EXP_MAX_ULP, RSQRT_MAX_ULP, SILU_MAX_ULP};
use vtpu_kernels::{scalar, KernelLevel, Kernels};

/// Every `stride`-th f32 in `[lo, hi]`, in chunks, through `kernel`, compared with
/// `reference`; returns (max ulp, input at max, count).
fn sweep(
    lo: f32,
    hi: f32,
    stride: u32,
    kernel: impl Fn(&mut [f32], &[f32]),
    reference: impl Fn(f32) -> f32,
    skip: impl Fn(f32, f32) -> bool,
) -> (u32, f32, u64) {
    // Walk the monotone integer line of f32 values.
    let key = |x: f32| -> i64 {
        let b = x.to_bits() as i32 as i64;
        if b < 0 {
            -(b & 0x7fff_ffff)
        } else {
            b
        }
    };
    let from_key = |k: i64| -> f32 {
        if k < 0 {
            f32::from_bits((-k) as u32 | 0x8000_0000)
        } else {
            f32::from_bits(k as u32)
        }
    };
    let (k0, k1) = (key(lo), key(hi));
    let mut input = Vec::with_capacity(1 << 16);
    let mut out = vec![0.0f32; 1 << 16];
    let (mut worst, mut worst_x, mut count) = (0u32, 0.0f32, 0u64);
    let mut k = k0;
    while k <= k1 {
        input.clear();
        while k <= k1 && input.len() < 1 << 16 {
            input.push(from_key(k));
            k += stride as i64;
        }
        let out = &mut out[..input.len()];
        kernel(out, &input);
        for (&x, &y) in input.iter().zip(out.iter()) {
            let r = reference(x);
            if skip(x, r) {
                continue;
            }
            let d = ulp_diff(y, r);
            if d > worst {
                worst = d;
                worst_x = x;
            }
            count += 1;
        }
    }
    (worst, worst_x, count)
}

fn main() {
    let stride: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for level in [KernelLevel::Avx512, KernelLevel::Avx2] {
        let Some(k) = Kernels::new(level) else {
            println!("{level}: not supported here, skipped");
            continue;
        };
        let (w, x, n) = sweep(
            -104.0,
            89.0,
            stride,
            |d, a| k.exp(d, a).unwrap(),
            scalar::exp_f32,
            |_, _| false,
        );
        println!("{level} exp   on [-104, 89]: max {w} ulp (bound {EXP_MAX_ULP}) at x = {x:e}, {n} inputs");
        // silu: the ulp bound covers normal results; below ~-87 the subnormal floor of
        // tolerance::silu_bound applies instead, so those are reported separately.
        let (w, x, n) = sweep(
            -87.0,
            120.0,
            stride,
            |d, a| k.silu(d, a).unwrap(),
            scalar::silu_f32,
            |_, r| r.abs() < f32::MIN_POSITIVE,
        );
        println!("{level} silu  on [-87, 120] (normal results): max {w} ulp (bound {SILU_MAX_ULP}) at x = {x:e}, {n} inputs");
        let (w, x, n) = sweep(
            f32::from_bits(1),
            f32::MAX,
            stride.max(1),
            |d, a| k.rsqrt(d, a).unwrap(),
            scalar::rsqrt_f32,
            |_, _| false,
        );
        println!("{level} rsqrt on (0, MAX]: max {w} ulp (bound {RSQRT_MAX_ULP}) at x = {x:e}, {n} inputs");
    }
}
