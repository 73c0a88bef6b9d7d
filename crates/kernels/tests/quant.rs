//! Quantized weights: dequantization against an independent decoder written here from
//! the format description, the quantized matmul against the exact f64 product with a
//! derived bound, bit equality of every implementation (scalar spec, AVX2, AVX-512 with
//! and without VNNI), invariance to m and to the row split, the reference quantizers,
//! and shape errors.

mod common;

use common::{bits_eq, levels, Failures, Rng};
use half::f16;
use proptest::prelude::*;
use vtpu_kernels::quant::{matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::tolerance::{check_close, gamma, U};
use vtpu_kernels::{dequantize_row, quantize_row, KernelError, Kernels, QuantType, Weights};

/// The matmul weight types.
const WEIGHT_TYPES: [QuantType; 8] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];

// ---------------------------------------------------------------------------------
// An independent decoder, element by element, from the layout description (block sizes
// and field offsets as in llama.cpp's ggml-common.h).

/// One decoded element: `x = d * sc * q - mn` where the format has those parts.
#[derive(Clone, Copy, Debug)]
struct Elem {
    /// The integer quant, offset already removed (Q4_0: nibble - 8, ...).
    q: i32,
    /// Block scale (f16 or f32 value).
    d: f32,
    /// Sub-block integer scale (1 where the format has none).
    sc: i32,
    /// Q4_1 / Q5_1: the block min `m` (added); Q4_K / Q5_K: `dmin * m_s` parts.
    min: MinPart,
}

#[derive(Clone, Copy, Debug)]
enum MinPart {
    None,
    /// `x = d q + m`.
    Add(f32),
    /// `x = d sc q - dmin * m`.
    Sub {
        dmin: f32,
        m: i32,
    },
}

fn f16_le(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Bit `i` of the little-endian bit string `bytes`.
fn bit(bytes: &[u8], i: usize) -> i32 {
    ((bytes[i / 8] >> (i % 8)) & 1) as i32
}

/// The nibble `hi` (0 = low, 1 = high) of `b`.
fn nib(b: u8, hi: usize) -> i32 {
    ((b >> (4 * hi)) & 15) as i32
}

/// Q4_K / Q5_K 6-bit scale and min of sub-block `s` from the 12 packed bytes, read as
/// bit fields: for s < 4 the scale is bits 0-5 of byte s and the min bits 0-5 of byte
/// s + 4; for s >= 4 the low 4 bits come from byte s + 4 (scale: low nibble, min: high
/// nibble) and the top 2 bits are bits 6-7 of byte s - 4 (scale) or byte s (min).
fn k_scale_min(p: &[u8], s: usize) -> (i32, i32) {
    let six = |b: u8| (b & 0x3f) as i32;
    let top2 = |b: u8| (b >> 6) as i32;
    if s < 4 {
        (six(p[s]), six(p[s + 4]))
    } else {
        (
            nib(p[s + 4], 0) + 16 * top2(p[s - 4]),
            nib(p[s + 4], 1) + 16 * top2(p[s]),
        )
    }
}

/// Element `e` of block `b`.
fn elem(qtype: QuantType, b: &[u8], e: usize) -> Elem {
    let plain = |q: i32, d: f32| Elem {
        q,
        d,
        sc: 1,
        min: MinPart::None,
    };
    match qtype {
        QuantType::Q8_0 => plain(b[2 + e] as i8 as i32, f16_le(b, 0)),
        QuantType::Q8_1 => plain(b[4 + e] as i8 as i32, f16_le(b, 0)),
        QuantType::Q4_0 => plain(nib(b[2 + e % 16], e / 16) - 8, f16_le(b, 0)),
        QuantType::Q4_1 => Elem {
            min: MinPart::Add(f16_le(b, 2)),
            ..plain(nib(b[4 + e % 16], e / 16), f16_le(b, 0))
        },
        QuantType::Q5_0 => plain(
            nib(b[6 + e % 16], e / 16) + 16 * bit(&b[2..6], e) - 16,
            f16_le(b, 0),
        ),
        QuantType::Q5_1 => Elem {
            min: MinPart::Add(f16_le(b, 2)),
            ..plain(
                nib(b[8 + e % 16], e / 16) + 16 * bit(&b[4..8], e),
                f16_le(b, 0),
            )
        },
        QuantType::Q4K | QuantType::Q5K => {
            let (chunk, within) = (e / 64, e % 64);
            let (hi, l) = (within / 32, within % 32);
            let qs = if qtype == QuantType::Q4K { 16 } else { 48 };
            let mut q = nib(b[qs + 32 * chunk + l], hi);
            if qtype == QuantType::Q5K {
                q += 16 * bit(&b[16 + l..17 + l], 2 * chunk + hi);
            }
            let (sc, m) = k_scale_min(&b[4..16], e / 32);
            Elem {
                q,
                d: f16_le(b, 0),
                sc,
                min: MinPart::Sub {
                    dmin: f16_le(b, 2),
                    m,
                },
            }
        }
        QuantType::Q6K => {
            let (half, w) = (e / 128, e % 128);
            let (t, l) = (w / 32, w % 32);
            let low = nib(b[64 * half + 32 * (t % 2) + l], t / 2);
            let high = ((b[128 + 32 * half + l] >> (2 * t)) & 3) as i32;
            Elem {
                q: low + 16 * high - 32,
                d: f16_le(b, 208),
                sc: b[192 + e / 16] as i8 as i32,
                min: MinPart::None,
            }
        }
        QuantType::Q8K => plain(
            b[4 + e] as i8 as i32,
            f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        ),
        other => panic!("no decoder for {other}"),
    }
}

impl Elem {
    /// The value as ggml's `dequantize_row_*` computes it in f32 (its operation order).
    fn ggml_f32(self, qtype: QuantType) -> f32 {
        match (qtype, self.min) {
            (QuantType::Q4K | QuantType::Q5K, MinPart::Sub { dmin, m }) => {
                (self.d * self.sc as f32) * self.q as f32 - dmin * m as f32
            }
            (QuantType::Q6K, _) => (self.d * self.sc as f32) * self.q as f32,
            (QuantType::Q8K, _) => self.d * self.q as f32,
            (_, MinPart::Add(m)) => self.q as f32 * self.d + m,
            _ => self.q as f32 * self.d,
        }
    }

    /// The exact value (f64 holds every product of these small integers and f16 / f32).
    fn exact(self) -> f64 {
        self.scaled() - self.min_value()
    }

    /// `d * sc * q`, exact.
    fn scaled(self) -> f64 {
        self.d as f64 * self.sc as f64 * self.q as f64
    }

    /// What the min part subtracts (negative for an added min), exact.
    fn min_value(self) -> f64 {
        match self.min {
            MinPart::None => 0.0,
            MinPart::Add(m) => -(m as f64),
            MinPart::Sub { dmin, m } => dmin as f64 * m as f64,
        }
    }
}

// ---------------------------------------------------------------------------------
// Random blocks.

/// A block scale: mostly ordinary magnitudes of both signs, sometimes 0, the smallest
/// f16 subnormals or the largest f16 values.
fn scale(rng: &mut Rng, typical: f32) -> f32 {
    let v = match rng.below(10) {
        0 => 0.0,
        1 => rng.uniform(1.0, 1000.0) * 6e-8, // f16 subnormal range
        2 => rng.uniform(1000.0, 65504.0),
        _ => rng.uniform(0.25, 1.0) * typical,
    };
    let v = if rng.below(4) == 0 { -v } else { v };
    f16::from_f32(v).to_f32()
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// `nblocks` random blocks of `qtype`: random quant bytes, random scales; 1 in 8 blocks
/// all zero. `typical` is the usual scale magnitude (small for the matmul tests, so the
/// products stay far from f32 overflow even with the extreme scales).
fn random_blocks(rng: &mut Rng, qtype: QuantType, nblocks: usize, typical: f32) -> Vec<u8> {
    let bb = qtype.block_bytes();
    let mut v = vec![0u8; nblocks * bb];
    for b in v.chunks_exact_mut(bb) {
        if rng.below(8) == 0 {
            continue; // all-zero block
        }
        for x in b.iter_mut() {
            *x = rng.next_u64() as u8;
        }
        match qtype {
            QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => {
                put_f16(b, 0, scale(rng, typical))
            }
            QuantType::Q4_1
            | QuantType::Q5_1
            | QuantType::Q8_1
            | QuantType::Q4K
            | QuantType::Q5K => {
                put_f16(b, 0, scale(rng, typical));
                put_f16(b, 2, scale(rng, typical));
            }
            QuantType::Q6K => put_f16(b, 208, scale(rng, typical)),
            QuantType::Q8K => {
                let d = scale(rng, typical);
                b[0..4].copy_from_slice(&d.to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Activations for weights of `qtype`: mixed magnitudes and signs, some all-zero
/// 32-element stretches, and a few rows scaled far up or down. For Q4_1 / Q5_1 not up:
/// their Q8_1 activation blocks store `s = d * sum(q)` as f16, which overflows to inf
/// once a block's sum passes 65504, in llama.cpp as here (a format limit, not tested).
fn random_acts(rng: &mut Rng, qtype: QuantType, len: usize) -> Vec<f32> {
    let q8_1 = qtype.vec_dot_type() == Some(QuantType::Q8_1);
    let s = match rng.below(6) {
        0 => 1e-6,
        1 if !q8_1 => 1e3,
        _ => 1.0,
    };
    let mut a: Vec<f32> = (0..len).map(|_| rng.mixed() * s).collect();
    for blk in a.chunks_mut(32) {
        if rng.below(10) == 0 {
            blk.fill(0.0);
        }
    }
    a
}

// ---------------------------------------------------------------------------------
// (a) dequantization.

#[test]
fn dequantize_row_matches_the_independent_decoder() {
    let mut rng = Rng::new(1);
    let mut fails = Failures::default();
    // The ggml types (the 8-row repacked layouts: tests/r8.rs, tests/r8_matmul.rs).
    for qtype in QuantType::ALL.into_iter().filter(|q| q.r8_base().is_none()) {
        for nblocks in [1, 2, 5] {
            let data = random_blocks(&mut rng, qtype, nblocks, 1.0);
            let n = nblocks * qtype.block_elems();
            let mut got = vec![f32::NAN; n];
            dequantize_row(qtype, &data, &mut got).unwrap();
            let want: Vec<f32> = (0..n)
                .map(|e| {
                    let be = qtype.block_elems();
                    let b = &data[e / be * qtype.block_bytes()..][..qtype.block_bytes()];
                    elem(qtype, b, e % be).ggml_f32(qtype)
                })
                .collect();
            // Same formulas, same f32 operation order: bit-identical.
            fails.check(bits_eq(&format!("{qtype} x{nblocks}"), &got, &want));
            // `Weights::get_f32` decodes the same values.
            let w = Weights::Quant { qtype, data: &data };
            assert_eq!(w.len(), n);
            assert_eq!(w.byte_len(), data.len());
            assert_eq!(w.dtype_name(), qtype.name());
            for e in [0, n / 2, n - 1] {
                assert_eq!(w.get_f32(e).map(f32::to_bits), Some(want[e].to_bits()));
            }
            assert_eq!(w.get_f32(n), None);
        }
    }
    fails.finish("dequantize_row");
}

/// Hand-checked blocks: one element per field, so a misplaced offset shows.
#[test]
fn dequantize_known_blocks() {
    // Q4_0: d = 0.5, byte 0 = 0x1f -> element 0 = (15 - 8) * 0.5, element 16 = (1 - 8) * 0.5.
    let mut b = [0x88u8; 18];
    put_f16(&mut b, 0, 0.5);
    b[2] = 0x1f;
    let mut y = [0f32; 32];
    dequantize_row(QuantType::Q4_0, &b, &mut y).unwrap();
    assert_eq!((y[0], y[16], y[1]), (3.5, -3.5, 0.0));
    // Q5_1: d = 1, m = -2, bit 17 of qh set -> element 17 = (nibble | 16) - 2.
    let mut b = [0u8; 24];
    put_f16(&mut b, 0, 1.0);
    put_f16(&mut b, 2, -2.0);
    b[4 + 2] = 0x02; // qh bit 17
    b[8 + 1] = 0x30; // element 17 high nibble = 3
    let mut y = [0f32; 32];
    dequantize_row(QuantType::Q5_1, &b, &mut y).unwrap();
    assert_eq!((y[17], y[0]), (17.0, -2.0));
    // Q6_K: d = 1, scale of sub-block 5 (elements 80..96) = -3; element 80 is in half 0,
    // t = 2 (high nibble of ql[16]), high bits 4-5 of qh[16].
    let mut b = [0u8; 210];
    put_f16(&mut b, 208, 1.0);
    b[192 + 5] = (-3i8) as u8;
    b[16] = 0x50; // high nibble 5
    b[128 + 16] = 0b10 << 4; // high bits = 2 -> q = 5 + 32 - 32 = 5
    let mut y = [0f32; 256];
    dequantize_row(QuantType::Q6K, &b, &mut y).unwrap();
    assert_eq!(y[80], -15.0);
}

#[test]
fn reference_quantizers_round_trip_within_half_a_step() {
    let mut rng = Rng::new(2);
    for qtype in [
        QuantType::Q8_0,
        QuantType::Q8_1,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8K,
    ] {
        let be = qtype.block_elems();
        let x = random_acts(&mut rng, qtype, 4 * be);
        let mut q = vec![0u8; 4 * qtype.block_bytes()];
        quantize_row(qtype, &x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_row(qtype, &q, &mut y).unwrap();
        for (blk, (xb, yb)) in x.chunks(be).zip(y.chunks(be)).enumerate() {
            let b = &q[blk * qtype.block_bytes()..][..qtype.block_bytes()];
            let step = elem(qtype, b, 0).d.abs() as f64;
            // Half a quantization step; Q4_0 / Q5_0 map the signed max to -8 / -16 and
            // clamp the other end at +7 / +15, so an element of opposite sign near the
            // max is off by up to a whole step.
            let steps = if matches!(qtype, QuantType::Q4_0 | QuantType::Q5_0) {
                1.0
            } else {
                0.5
            };
            // Storing d (and the min) as f16 moves each by at most 2^-11 relative, or
            // 2^-25 absolute in the subnormal range (which also bounds how far the
            // stored d is below the exact one: + 2^-25 on the step); times the largest
            // |q|. Q8_K stores d as f32 (2^-24 relative). Plus a few f32 roundings.
            let f16_err = |v: f64| (v * 2f64.powi(-11)).max(2f64.powi(-25));
            let qmax = match qtype {
                QuantType::Q4_0 => 8.0,
                QuantType::Q4_1 => 15.0,
                QuantType::Q5_0 => 16.0,
                QuantType::Q5_1 => 31.0,
                _ => 127.0,
            };
            let min = match elem(qtype, b, 0).min {
                MinPart::Add(m) => m.abs() as f64,
                _ => 0.0,
            };
            let amax = xb.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
            let d_err = if qtype == QuantType::Q8K {
                step * U
            } else {
                f16_err(step)
            };
            let bound = steps * (step + 2f64.powi(-25))
                + qmax * d_err
                + if min > 0.0 { f16_err(min) } else { 0.0 }
                + 8.0 * U * (amax + min);
            for (e, (&xv, &yv)) in xb.iter().zip(yb).enumerate() {
                let err = (xv as f64 - yv as f64).abs();
                assert!(
                    err <= bound,
                    "{qtype} block {blk} elem {e}: {xv} -> {yv}, err {err:e} > {bound:e}"
                );
            }
        }
    }
}

/// ggml's reference quantizers on a hand-computed input.
#[test]
fn reference_quantizers_known_outputs() {
    // Q8_0: amax = 127 -> d = 1, q = round(x) half away from zero (roundf).
    let mut x = [0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    let mut q = [0u8; 34];
    quantize_row(QuantType::Q8_0, &x, &mut q).unwrap();
    assert_eq!(f16_le(&q, 0), 1.0);
    assert_eq!((q[2] as i8, q[3] as i8, q[4] as i8), (127, 3, -3));
    // Q4_0: max (signed, largest magnitude) = -8 -> d = 1, q = min(15, trunc(x + 8.5)).
    let mut x = [0f32; 32];
    x[0] = -8.0;
    x[1] = 7.9;
    x[16] = 3.4;
    let mut q = [0u8; 18];
    quantize_row(QuantType::Q4_0, &x, &mut q).unwrap();
    assert_eq!(f16_le(&q, 0), 1.0);
    assert_eq!(q[2] & 15, 0); // -8 + 8.5 -> 0
    assert_eq!(q[3] & 15, 15); // 7.9 + 8.5 = 16.4 -> 16 -> 15
    assert_eq!(q[2] >> 4, 11); // 3.4 + 8.5 = 11.9 -> 11
                               // k-quant weight quantizers are not implemented: a typed error.
    assert!(matches!(
        quantize_row(QuantType::Q4K, &[0.0; 256], &mut [0u8; 144]),
        Err(KernelError::Unsupported { .. })
    ));
}

/// Golden vectors from gguf-py (the numpy port of ggml's reference quantizers, an
/// implementation independent of ours; regenerate with
/// `tests/data/gen_gguf_py_vectors.py`): our quantizers must write the same bytes and
/// our dequantizers the same f32 bits.
#[test]
fn quantizers_and_dequantizers_match_gguf_py() {
    let mut v: &[u8] = include_bytes!("data/gguf_py_vectors.bin");
    let mut take = |n: usize| {
        let (head, rest) = v.split_at(n);
        v = rest;
        head
    };
    let len = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap()) as usize;
    let (mut quantized, mut dequantized) = (0, 0);
    let total = include_bytes!("data/gguf_py_vectors.bin").len();
    let mut used = 0;
    while used < total {
        let name = std::str::from_utf8(take(8))
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let n_in = len(take(8));
        let input = take(n_in).to_vec();
        let n_out = len(take(8));
        let output = take(n_out).to_vec();
        used += 24 + n_in + n_out;
        let qtype = QuantType::ALL
            .into_iter()
            .find(|q| q.name() == &name[1..])
            .unwrap_or_else(|| panic!("unknown type in {name}"));
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        if name.starts_with('Q') {
            let x = floats(&input);
            let mut q = vec![0u8; output.len()];
            quantize_row(qtype, &x, &mut q).unwrap();
            assert_eq!(q, output, "quantize {qtype}");
            quantized += 1;
        } else {
            let want = floats(&output);
            let mut y = vec![0f32; want.len()];
            dequantize_row(qtype, &input, &mut y).unwrap();
            bits_eq(&format!("dequantize {qtype}"), &y, &want).unwrap();
            dequantized += 1;
        }
    }
    assert_eq!(
        (quantized, dequantized),
        (15, 8),
        "records in the golden file"
    );
}

// ---------------------------------------------------------------------------------
// (b) the quantized matmul against the exact product.

/// `|C - C_exact|` bound for one output, derived from the activation quantization and
/// the f32 accumulation (see the comment in the body).
fn matmul_bound(qtype: QuantType, a: &[f32], w: &[u8], c0: f32) -> (f64, f64) {
    let be = qtype.block_elems();
    let vec_dot = qtype.vec_dot_type().unwrap();
    let (u, f16_rel, f16_abs) = (U, 2f64.powi(-11), 2f64.powi(-25));
    // Activation quantization, per element of a block of `vb` activations with largest
    // magnitude `amax` (d = amax / 127):
    // - Q8_0 / Q8_1: q = round(x * 127 / amax) is within 1/2 (+ 2^-15 for the f32
    //   rounding of 127 / amax and of the product, which can flip a near-tie) of
    //   x / d, so |x - d q| <= d (1/2 + 2^-15); the stored d_a = f16(d) adds
    //   |d - d_a| |q| <= 127 max(2^-11 d, 2^-25) (f16 relative rounding, or the absolute
    //   half-spacing of f16 subnormals).
    // - Q8_K: d = 1 / iscale in f32: |x - d q| <= |d| (1/2 + 2^-15) + 127 * 2u |d|.
    // Per block the Q8_1 sum s = f16(f32(d sum q)) also differs from sum x by
    // 32 d (1/2 + 2^-15) + u |d sum q| + max(2^-11 |d sum q|, 2^-25), |sum q| <= 32 * 127.
    let vb = if vec_dot == QuantType::Q8K { 256 } else { 32 };
    let mut quant_err = 0f64; // sum |weight part| * |activation error|
    let mut mags = c0.abs() as f64; // sum of |terms| the f32 accumulation sees
    let mut exact = c0 as f64;
    for (ab_i, ab) in a.chunks(vb).enumerate() {
        let amax = ab.iter().fold(0f32, |m, &x| m.max(x.abs())) as f64;
        let d = amax / 127.0;
        let e_a = if vec_dot == QuantType::Q8K {
            d * (0.5 + 2f64.powi(-15) + 254.0 * u)
        } else {
            d * (0.5 + 2f64.powi(-15)) + 127.0 * (f16_rel * d).max(f16_abs)
        };
        let e_s = 32.0 * d * (0.5 + 2f64.powi(-15))
            + u * 32.0 * 127.0 * d
            + (f16_rel * 32.0 * 127.0 * d).max(f16_abs);
        for (j, &x) in ab.iter().enumerate() {
            let e = ab_i * vb + j;
            let b = &w[e / be * qtype.block_bytes()..][..qtype.block_bytes()];
            let el = elem(qtype, b, e % be);
            exact += el.exact() * x as f64;
            let xa = x.abs() as f64 + e_a;
            match el.min {
                // Q4_1 / Q5_1: d q through the integer dot, m through s (per block).
                MinPart::Add(m) => {
                    quant_err += el.scaled().abs() * e_a;
                    mags += el.scaled().abs() * xa;
                    if j % 32 == 0 {
                        let sum: f64 = ab[j..j + 32].iter().map(|&v| v as f64).sum();
                        quant_err += (m as f64).abs() * e_s;
                        mags += (m as f64).abs() * (sum.abs() + e_s);
                    }
                }
                // Both parts use the same quantized activation: error |x_exact| e_a,
                // but the f32 sums see both parts' magnitudes.
                _ => {
                    quant_err += el.exact().abs() * e_a;
                    mags += (el.scaled().abs() + el.min_value().abs()) * xa;
                }
            }
        }
    }
    // f32 accumulation: each lane is a chain of one fma per block (nb), then 3 adds of
    // the hsum tree, the min term (1), the add to C (1), the rounding of the combined
    // scale d_w * d_a (1, exact for the f16 x f16 types) and of dmin (1): at most nb + 7
    // roundings on any term, so gamma(nb + 7) times the sum of the term magnitudes.
    let nb = a.len() / be;
    (exact, quant_err + gamma(nb + 7) * mags)
}

/// One shape at one implementation against the exact product; returns C for reuse.
#[allow(clippy::too_many_arguments)]
fn check_against_exact(
    fails: &mut Failures,
    imp: QuantImpl,
    qtype: QuantType,
    a: &[f32],
    w: &[u8],
    c0: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    let mut c = c0.to_vec();
    matmul_bt_rows_with(imp, &mut c, a, qtype, w, m, n, k, 0, n).unwrap();
    let row_bytes = w.len() / n;
    for i in 0..m {
        for j in 0..n {
            let wr = &w[j * row_bytes..(j + 1) * row_bytes];
            let (exact, bound) = matmul_bound(qtype, &a[i * k..(i + 1) * k], wr, c0[i * n + j]);
            fails.check(check_close(
                &format!("{imp:?} {qtype} m={m} n={n} k={k} C[{i},{j}]"),
                c[i * n + j],
                exact as f32,
                bound + (exact.abs() * U), // + rounding `exact` to f32
            ));
        }
    }
    c
}

#[test]
fn quantized_matmul_matches_the_exact_product() {
    let mut rng = Rng::new(3);
    let mut fails = Failures::default();
    for qtype in WEIGHT_TYPES {
        let be = qtype.block_elems();
        for &(m, n, nb) in &[(1, 5, 1), (1, 9, 3), (3, 6, 2), (6, 5, 4), (9, 3, 1)] {
            let k = nb * be;
            let w = random_blocks(&mut rng, qtype, n * nb, 0.01);
            let a = random_acts(&mut rng, qtype, m * k);
            let c0: Vec<f32> = (0..m * n).map(|_| rng.mixed()).collect();
            for imp in QuantImpl::supported() {
                check_against_exact(&mut fails, imp, qtype, &a, &w, &c0, m, n, k);
            }
        }
    }
    fails.finish("quantized matmul vs exact");
}

/// Sanity check that the bound is not vacuous: for ordinary data it is a small fraction
/// of the result's scale (a blanket or broken bound would let real bugs through).
#[test]
fn the_derived_bound_is_tight_enough_to_catch_errors() {
    let mut rng = Rng::new(4);
    for qtype in WEIGHT_TYPES {
        let k = 4 * qtype.block_elems();
        let mut w = vec![0u8; 4 * qtype.block_bytes()];
        let x: Vec<f32> = (0..k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        // Reference-quantize where we can; otherwise random blocks with ordinary scales.
        if quantize_row(qtype, &x, &mut w).is_err() {
            w = random_blocks(&mut Rng::new(5), qtype, 4, 0.01);
        }
        let a: Vec<f32> = (0..k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let (exact, bound) = matmul_bound(qtype, &a, &w, 0.0);
        let scale: f64 = (0..k)
            .map(|e| {
                let b = &w[e / qtype.block_elems() * qtype.block_bytes()..][..qtype.block_bytes()];
                (elem(qtype, b, e % qtype.block_elems()).exact() * a[e] as f64).abs()
            })
            .sum();
        assert!(scale > 0.0, "{qtype}: degenerate test data");
        // Worst case over the rounding directions: ~1% for the symmetric types, ~3% for
        // Q4_1 / Q5_1 (whose per-block sum s carries up to 32 half-steps of error).
        assert!(
            bound < 0.05 * scale,
            "{qtype}: bound {bound:e} vs scale {scale:e}"
        );
        assert!(
            check_close("x", (exact + 0.05 * scale) as f32, exact as f32, bound).is_err(),
            "{qtype}"
        );
    }
}

// ---------------------------------------------------------------------------------
// (c) every implementation gives the scalar spec's bits; invariance to m and split.

/// Every SIMD implementation is bit-identical to the scalar spec: the integer dot
/// products are exact and the f32 operations are the same sequence (`dot_ref.rs`).
#[test]
fn every_implementation_is_bit_identical_to_the_scalar_spec() {
    let mut rng = Rng::new(6);
    let mut fails = Failures::default();
    let imps = QuantImpl::supported();
    println!("implementations: {imps:?}");
    for qtype in WEIGHT_TYPES {
        let be = qtype.block_elems();
        // GEMV tiles (1 x 4 + tail), prefill tiles (4 x 2 + tails), long rows.
        for &(m, n, nb) in &[
            (1, 7, 3),
            (1, 4, 1),
            (5, 7, 2),
            (8, 4, 5),
            (2, 1, 1),
            (1, 33, 24),
            // Prefill panels of 4 weight rows with row and column tails.
            (9, 11, 3),
            (12, 9, 2),
            (4, 8, 1),
            (7, 3, 2),
            // Prefill calls split into row chunks (k = 8192: 256 KiB of quantized rows
            // is 16 of them; 53 = 16 + 16 + 16 + 5, the last chunk with a row tail).
            (53, 6, 8192 / be),
        ] {
            let k = nb * be;
            let w = random_blocks(&mut rng, qtype, n * nb, 0.05);
            let a = random_acts(&mut rng, qtype, m * k);
            let c0: Vec<f32> = (0..m * n).map(|_| rng.mixed()).collect();
            let mut want = c0.clone();
            matmul_bt_rows_with(QuantImpl::Scalar, &mut want, &a, qtype, &w, m, n, k, 0, n)
                .unwrap();
            for &imp in &imps[1..] {
                let mut got = c0.clone();
                matmul_bt_rows_with(imp, &mut got, &a, qtype, &w, m, n, k, 0, n).unwrap();
                fails.check(bits_eq(
                    &format!("{imp:?} {qtype} m={m} n={n} k={k}"),
                    &got,
                    &want,
                ));
            }
            // The public entry point at every level agrees too.
            for kern in levels() {
                let mut got = c0.clone();
                kern.matmul_bt(&mut got, &a, Weights::Quant { qtype, data: &w }, m, n, k)
                    .unwrap();
                fails.check(bits_eq(&format!("{:?} {qtype}", kern.level()), &got, &want));
            }
        }
    }
    fails.finish("implementations vs scalar spec");
}

#[test]
fn results_do_not_depend_on_m_or_the_row_split() {
    let mut rng = Rng::new(7);
    for qtype in WEIGHT_TYPES {
        let (m, n, k) = (7, 13, 2 * qtype.block_elems());
        let w = random_blocks(&mut rng, qtype, n * 2, 0.05);
        let a = random_acts(&mut rng, qtype, m * k);
        for kern in levels() {
            let b = Weights::Quant { qtype, data: &w };
            let mut full = vec![0f32; m * n];
            kern.matmul_bt(&mut full, &a, b, m, n, k).unwrap();
            for i in 0..m {
                // Q4_K copies llama.cpp's repacked kernels: the rows of a full group of 4
                // (rows 0..4 of these 7) are summed per 64 elements, a row alone per
                // 256 (the rest of every format: the same bits whatever m).
                if qtype == QuantType::Q4K && i < 4 {
                    continue;
                }
                let mut row = vec![0f32; n];
                kern.matmul_bt(&mut row, &a[i * k..(i + 1) * k], b, 1, n, k)
                    .unwrap();
                bits_eq(
                    &format!("{:?} {qtype} row {i}", kern.level()),
                    &row,
                    &full[i * n..(i + 1) * n],
                )
                .unwrap();
            }
            for (n0, n1) in [(0, 1), (1, 6), (6, 13), (5, 5)] {
                let mut part = vec![0f32; m * (n1 - n0)];
                kern.matmul_bt_rows(&mut part, &a, b, m, n, k, n0, n1)
                    .unwrap();
                for i in 0..m {
                    bits_eq(
                        &format!("{:?} {qtype} rows {n0}..{n1} row {i}", kern.level()),
                        &part[i * (n1 - n0)..(i + 1) * (n1 - n0)],
                        &full[i * n + n0..i * n + n1],
                    )
                    .unwrap();
                }
            }
        }
    }
}

/// Decode- and prefill-sized shapes (the SmolLM2 / Qwen2.5 row lengths) against the
/// exact product at the best implementation.
#[test]
fn quantized_matmul_model_shapes() {
    let mut rng = Rng::new(8);
    let mut fails = Failures::default();
    let best = *QuantImpl::supported().last().unwrap();
    for qtype in WEIGHT_TYPES {
        for &(m, n, k) in &[(1, 6, 1536), (3, 5, 4864), (1, 3, 896)] {
            if k % qtype.block_elems() != 0 {
                continue; // 896 is not a multiple of 256 (llama.cpp falls back too)
            }
            let w = random_blocks(&mut rng, qtype, n * k / qtype.block_elems(), 0.01);
            let a = random_acts(&mut rng, qtype, m * k);
            check_against_exact(&mut fails, best, qtype, &a, &w, &vec![0.0; m * n], m, n, k);
        }
    }
    fails.finish("model shapes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random types, shapes and row ranges: every implementation equals the spec.
    #[test]
    fn random_shapes_bit_identical(t in 0usize..8, m in 1usize..7, n in 1usize..11, nb in 1usize..4,
                                   lo in 0usize..11, len in 0usize..11, seed in any::<u64>()) {
        let qtype = WEIGHT_TYPES[t];
        let k = nb * qtype.block_elems();
        let (n0, n1) = (lo.min(n), (lo + len).min(n));
        let mut rng = Rng::new(seed);
        let w = random_blocks(&mut rng, qtype, n * nb, 0.05);
        let a = random_acts(&mut rng, qtype, m * k);
        let c0: Vec<f32> = (0..m * (n1 - n0)).map(|_| rng.mixed()).collect();
        let mut want = c0.clone();
        matmul_bt_rows_with(QuantImpl::Scalar, &mut want, &a, qtype, &w, m, n, k, n0, n1).unwrap();
        for imp in QuantImpl::supported() {
            let mut got = c0.clone();
            matmul_bt_rows_with(imp, &mut got, &a, qtype, &w, m, n, k, n0, n1).unwrap();
            let what = format!("{:?} {}", imp, qtype);
            let r = bits_eq(&what, &got, &want);
            prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}

// ---------------------------------------------------------------------------------
// (d) shape errors.

fn expect_shape_err(r: Result<(), KernelError>, needles: &[&str]) {
    match r {
        Err(KernelError::ShapeMismatch { ref detail, .. }) => {
            for n in needles {
                assert!(detail.contains(n), "{detail:?} should mention {n:?}");
            }
        }
        other => panic!("expected a shape error mentioning {needles:?}, got {other:?}"),
    }
}

#[test]
fn shape_errors_are_typed_and_leave_c_untouched() {
    let w = vec![0u8; 2 * 2 * 18]; // 2 rows of 2 Q4_0 blocks (k = 64)
    let a = vec![1.0f32; 64];
    fn q(data: &[u8]) -> Weights<'_> {
        Weights::Quant {
            qtype: QuantType::Q4_0,
            data,
        }
    }
    for kern in levels() {
        let mut c = vec![7.0f32; 2];
        // k not a multiple of the block.
        expect_shape_err(
            kern.matmul_bt(&mut c, &a[..48], q(&w), 1, 2, 48),
            &["k = 48", "q4_0", "32"],
        );
        // Weight bytes not n rows of blocks.
        expect_shape_err(
            kern.matmul_bt(&mut c, &a, q(&w[..70]), 1, 2, 64),
            &["expected 72 bytes", "got 70"],
        );
        expect_shape_err(
            kern.matmul_bt(&mut c, &a, q(&w), 1, 3, 64),
            &["expected 108 bytes"],
        );
        // a and c lengths, row range.
        expect_shape_err(
            kern.matmul_bt(&mut c, &a[..32], q(&w), 1, 2, 64),
            &["a (m x k)"],
        );
        expect_shape_err(
            kern.matmul_bt(&mut c[..1], &a, q(&w), 1, 2, 64),
            &["c (m x (n1 - n0))"],
        );
        expect_shape_err(
            kern.matmul_bt_rows(&mut c, &a, q(&w), 1, 2, 64, 1, 3),
            &["row range"],
        );
        // Activation formats are not weights.
        let r = kern.matmul_bt(
            &mut c,
            &vec![0.0; 256],
            Weights::Quant {
                qtype: QuantType::Q8K,
                data: &[0u8; 2 * 292],
            },
            1,
            2,
            256,
        );
        assert!(matches!(r, Err(KernelError::Unsupported { .. })), "{r:?}");
        assert_eq!(c, [7.0, 7.0], "{:?}: C touched on error", kern.level());
        // m = 0 and an empty row range are fine and do nothing.
        kern.matmul_bt(&mut [], &[], q(&w), 0, 2, 64).unwrap();
        kern.matmul_bt_rows(&mut [], &a, q(&w), 1, 2, 64, 1, 1)
            .unwrap();
    }
    // dequantize_row / quantize_row lengths.
    expect_shape_err(
        dequantize_row(QuantType::Q4_0, &w[..18], &mut [0.0; 33]),
        &["33 elements", "q4_0"],
    );
    expect_shape_err(
        dequantize_row(QuantType::Q4_0, &w[..17], &mut [0.0; 32]),
        &["expected 18 bytes", "got 17"],
    );
    expect_shape_err(
        quantize_row(QuantType::Q8_0, &[0.0; 64], &mut [0u8; 34]),
        &["expected 68 bytes"],
    );
}

/// The public entry point picks the implementation of its level.
#[test]
fn levels_map_to_implementations() {
    for kern in levels() {
        let imp = QuantImpl::for_level(kern.level());
        assert!(QuantImpl::supported().contains(&imp), "{imp:?}");
    }
    assert_eq!(
        QuantImpl::for_level(vtpu_kernels::KernelLevel::Scalar),
        QuantImpl::Scalar
    );
    // Kernels is only used to keep the import honest on CPUs without SIMD.
    let _ = Kernels::current();
}
