//! Causal attention of query rows over a KV cache, in the arithmetic of llama.cpp's CPU
//! flash attention (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`, ggml-cpu
//! `ops.cpp`, as vendored in llama-cpp-python 0.3.36 and built by GCC with AVX-512F).
//!
//! Why copy llama.cpp's arithmetic instead of computing attention as exactly as we can:
//! on models with large activation outliers (SmolLM2) every matrix product quantizes its
//! input rows to 8 bits, so a difference in the last bit of an attention output can move
//! an activation across a rounding boundary and the logits by tenths. Measured with
//! `scripts/llamacpp_self_agreement.sh`: llama.cpp with its flash attention turned off
//! (f32 softmax and products) differs from its own default by up to 0.94 in the logits
//! and changes greedy tokens at top-2 gaps up to 0.26. Token-for-token agreement with
//! llama.cpp needs the same operations in the same order, and this is that order:
//!
//! For each query row (its token `t = r / per` sees keys `0..=s - T + t`):
//! - f16 cache: the query row is rounded to f16; each score is `ggml_vec_dot_f16` (four
//!   16-lane f32 accumulators fed by FMA over 64-element steps, reduced as
//!   `acc0 + acc2`, `acc1 + acc3`, then their sum, then GCC's `_mm512_reduce_add_ps`
//!   tree; a tail of `hd % 64` elements is added in f64), times `1/sqrt(hd)`;
//! - online softmax in key order: a new maximum rescales the running sum and the output
//!   accumulator by `expf(M_old - M)`, any other key weighs `expf(s - M)`; the output
//!   accumulator is **f16** (each update `f16(fma(v, w, acc))`, each rescale
//!   `f16(acc * ms)`), the running sum `S = fma(S, ms, w)` in f32 (GCC contracts it);
//! - the result is `f32(acc) * (1 / S)`.
//! - f32 cache: the same with `ggml_vec_dot_f32`'s order (tail added in f32 by FMA) and
//!   an f32 accumulator.
//!
//! `expf` is the C library's (Rust's `f32::exp` lowers to the same libm call as GCC's).
//! The scalar function is the specification; the AVX-512 one performs the same IEEE
//! operations in the same order (a test checks bit equality).
//!
//! That is llama.cpp's path for fewer than 64 query tokens per call (decode, short
//! prompts). From 64 tokens on llama.cpp takes its tiled path, and so do
//! [`attention_scalar`] and [`attention`]: see [`tiled`] (f32 query and accumulator,
//! keys in tiles of 64, polynomial `expf` on 16 lanes).

use half::f16;

#[cfg(target_arch = "x86_64")]
mod blocked;
pub mod tiled;

pub use tiled::{attention_tiled_scalar, is_tiled, TILE_KV, TILE_Q};

/// Largest head dimension the kernels accept (stack scratch; real models use 64..=256).
pub const MAX_HEAD_DIM: usize = 512;

/// The key or value rows of a KV cache: `[s, hd]`, row-major.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl KvRows<'_> {
    pub fn len(&self) -> usize {
        match self {
            KvRows::F32(x) => x.len(),
            KvRows::F16(x) => x.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn is_f16(&self) -> bool {
        matches!(self, KvRows::F16(_))
    }
}

/// `1 / sqrt(hd)` as llama.cpp's graph builders compute it (`1.0f/sqrtf(float(hd))`).
pub fn attention_scale(hd: usize) -> f32 {
    1.0f32 / (hd as f32).sqrt()
}

/// The number of keys query row `r` sees: its token is `r / per` of the `rows / per`
/// tokens that end the `s`-key cache.
pub fn visible_keys(r: usize, rows: usize, per: usize, s: usize) -> usize {
    let t = r / per;
    let tokens = rows / per;
    s + t + 1 - tokens
}

/// The online softmax of one query row, key by key in llama.cpp's order: the running
/// maximum and the running sum `S = fma(S, ms, vs)`.
struct Online {
    max: f32,
    sum: f32,
}

impl Online {
    fn new() -> Online {
        Online {
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// Takes key score `sc`: `(Some(ms), 1)` for a new maximum (what was accumulated is
    /// to be rescaled by `ms = expf(M_old - M)`), else `(None, vs = expf(s - M))`; the
    /// value is to be added with weight `vs`.
    #[inline(always)]
    fn key(&mut self, sc: f32) -> (Option<f32>, f32) {
        if sc > self.max {
            let ms = (self.max - sc).exp();
            self.max = sc;
            self.sum = self.sum.mul_add(ms, 1.0);
            (Some(ms), 1.0)
        } else {
            let vs = (sc - self.max).exp();
            self.sum = self.sum.mul_add(1.0, vs);
            (None, vs)
        }
    }

    /// `1 / S` (0 for no key).
    fn inv(&self) -> f32 {
        if self.sum == 0.0 {
            0.0
        } else {
            1.0 / self.sum
        }
    }
}

/// GCC's `_mm512_reduce_add_ps`: halves, then quarters, then pairs (avx512fintrin.h).
#[inline(always)]
fn reduce16(x: &[f32; 16]) -> f32 {
    let mut t3 = [0f32; 8];
    for i in 0..8 {
        t3[i] = x[i + 8] + x[i];
    }
    let mut t6 = [0f32; 4];
    for j in 0..4 {
        t6[j] = t3[j + 4] + t3[j];
    }
    let t8 = [t6[0] + t6[2], t6[1] + t6[3]];
    t8[0] + t8[1]
}

/// `ggml_vec_dot_f16` with GGML_SIMD on AVX-512F (no AVX512-FP16).
fn dot_f16(x: &[f16], y: &[f16]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut sum = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let k = i + 16 * j + l;
                *a = x[k].to_f32().mul_add(y[k].to_f32(), *a);
            }
        }
    }
    let mut s0 = [0f32; 16];
    for l in 0..16 {
        let a = sum[0][l] + sum[2][l];
        let b = sum[1][l] + sum[3][l];
        s0[l] = a + b;
    }
    let mut sumf = reduce16(&s0) as f64;
    for k in np..n {
        sumf += (x[k].to_f32() * y[k].to_f32()) as f64;
    }
    sumf as f32
}

/// `ggml_vec_dot_f32` with GGML_SIMD on AVX-512F.
fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut sum = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let k = i + 16 * j + l;
                *a = x[k].mul_add(y[k], *a);
            }
        }
    }
    let mut s0 = [0f32; 16];
    for l in 0..16 {
        let a = sum[0][l] + sum[2][l];
        let b = sum[1][l] + sum[3][l];
        s0[l] = a + b;
    }
    let mut sumf = reduce16(&s0);
    for k in np..n {
        sumf = x[k].mul_add(y[k], sumf);
    }
    sumf
}

/// The shape of an attention call: `rows` query rows of `hd` elements (`per` rows per
/// token: the query heads of one kv head), over an `s`-key cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub rows: usize,
    pub hd: usize,
    pub s: usize,
    pub per: usize,
}

/// Why an attention call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttnShapeError {
    HeadDim(usize),
    Per {
        rows: usize,
        per: usize,
    },
    Tokens {
        tokens: usize,
        s: usize,
    },
    Len {
        what: &'static str,
        want: usize,
        got: usize,
    },
    MixedTypes,
}

impl std::fmt::Display for AttnShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttnShapeError::HeadDim(hd) => {
                write!(f, "head dimension {hd} is outside 1..={MAX_HEAD_DIM}")
            }
            AttnShapeError::Per { rows, per } => {
                write!(
                    f,
                    "{rows} query rows are not a multiple of {per} rows per token"
                )
            }
            AttnShapeError::Tokens { tokens, s } => {
                write!(f, "{tokens} query tokens but only {s} keys in the cache")
            }
            AttnShapeError::Len { what, want, got } => {
                write!(f, "{what} holds {got} elements, {want} expected")
            }
            AttnShapeError::MixedTypes => write!(f, "keys and values differ in element type"),
        }
    }
}

/// Checks the shapes: `q` and `out` `[rows, hd]`, `k` and `v` `[s, hd]` of one type.
pub fn check_shapes(
    out: usize,
    q: usize,
    k: &KvRows<'_>,
    v: &KvRows<'_>,
    shape: AttnShape,
) -> Result<(), AttnShapeError> {
    let AttnShape { rows, hd, s, per } = shape;
    if hd == 0 || hd > MAX_HEAD_DIM {
        return Err(AttnShapeError::HeadDim(hd));
    }
    if per == 0 || !rows.is_multiple_of(per) {
        return Err(AttnShapeError::Per { rows, per });
    }
    if rows / per > s {
        return Err(AttnShapeError::Tokens {
            tokens: rows / per,
            s,
        });
    }
    let len = |what, want: usize, got: usize| {
        if want == got {
            Ok(())
        } else {
            Err(AttnShapeError::Len { what, want, got })
        }
    };
    len("the output", rows * hd, out)?;
    len("the queries", rows * hd, q)?;
    len("the keys", s * hd, k.len())?;
    len("the values", s * hd, v.len())?;
    if k.is_f16() != v.is_f16() {
        return Err(AttnShapeError::MixedTypes);
    }
    Ok(())
}

/// The specification: `out[r] = softmax(q[r] . K^T / sqrt(hd)) . V` over row `r`'s
/// visible keys, in llama.cpp's arithmetic for the call's size: its tiled path for 64 or
/// more query tokens ([`is_tiled`], [`attention_tiled_scalar`]), else `one_chunk`
/// ([`attention_one_chunk_scalar`]). Shapes as [`check_shapes`].
pub fn attention_scalar(
    out: &mut [f32],
    q: &[f32],
    k: KvRows<'_>,
    v: KvRows<'_>,
    shape: AttnShape,
) -> Result<(), AttnShapeError> {
    if is_tiled(shape) {
        attention_tiled_scalar(out, q, k, v, shape)
    } else {
        attention_one_chunk_scalar(out, q, k, v, shape)
    }
}

/// The specification of llama.cpp's `one_chunk` path (module docs), for any call shape.
pub fn attention_one_chunk_scalar(
    out: &mut [f32],
    q: &[f32],
    k: KvRows<'_>,
    v: KvRows<'_>,
    shape: AttnShape,
) -> Result<(), AttnShapeError> {
    check_shapes(out.len(), q.len(), &k, &v, shape)?;
    let AttnShape { rows, hd, s, per } = shape;
    let scale = attention_scale(hd);
    for r in 0..rows {
        let vis = visible_keys(r, rows, per, s);
        let qr = &q[r * hd..(r + 1) * hd];
        let o = &mut out[r * hd..(r + 1) * hd];
        match (k, v) {
            (KvRows::F16(k), KvRows::F16(v)) => {
                let mut q16 = [f16::ZERO; MAX_HEAD_DIM];
                let q16 = &mut q16[..hd];
                for (d, &x) in q16.iter_mut().zip(qr) {
                    *d = f16::from_f32(x);
                }
                let mut acc = [f16::ZERO; MAX_HEAD_DIM];
                let acc = &mut acc[..hd];
                let mut on = Online::new();
                for ic in 0..vis {
                    let sc = dot_f16(&k[ic * hd..(ic + 1) * hd], q16) * scale + 0.0;
                    let (rescale, vs) = on.key(sc);
                    if let Some(ms) = rescale {
                        for a in acc.iter_mut() {
                            *a = f16::from_f32(a.to_f32() * ms);
                        }
                    }
                    for (a, &x) in acc.iter_mut().zip(&v[ic * hd..(ic + 1) * hd]) {
                        *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
                    }
                }
                let inv = on.inv();
                for (o, a) in o.iter_mut().zip(acc.iter()) {
                    *o = a.to_f32() * inv;
                }
            }
            (KvRows::F32(k), KvRows::F32(v)) => {
                o.fill(0.0);
                let mut on = Online::new();
                for ic in 0..vis {
                    let sc = dot_f32(&k[ic * hd..(ic + 1) * hd], qr) * scale + 0.0;
                    let (rescale, vs) = on.key(sc);
                    if let Some(ms) = rescale {
                        for a in o.iter_mut() {
                            *a *= ms;
                        }
                    }
                    for (a, &x) in o.iter_mut().zip(&v[ic * hd..(ic + 1) * hd]) {
                        *a = x.mul_add(vs, *a);
                    }
                }
                let inv = on.inv();
                for a in o.iter_mut() {
                    *a *= inv;
                }
            }
            _ => return Err(AttnShapeError::MixedTypes),
        }
    }
    Ok(())
}

/// [`attention_scalar`]'s bits with AVX-512F vectors when `simd` and the CPU allow: the
/// tiled path when `hd` is a multiple of 16, `one_chunk` when it is a multiple of 64
/// (every lane computes what the scalar loop computes for its element); otherwise the
/// scalar.
pub fn attention(
    out: &mut [f32],
    q: &[f32],
    k: KvRows<'_>,
    v: KvRows<'_>,
    shape: AttnShape,
    simd: bool,
) -> Result<(), AttnShapeError> {
    check_shapes(out.len(), q.len(), &k, &v, shape)?;
    let tiled = is_tiled(shape);
    #[cfg(target_arch = "x86_64")]
    if simd && std::arch::is_x86_feature_detected!("avx512f") {
        if tiled && shape.hd.is_multiple_of(16) {
            // SAFETY: avx512f was just detected; every slice length was checked above.
            unsafe { tiled::avx512::attention_tiled(out, q, k, v, shape) };
            return Ok(());
        }
        if !tiled && blocked::handles(shape) {
            // SAFETY: as above; `handles` checked the head dimension.
            unsafe { blocked::attention(out, q, k, v, shape) };
            return Ok(());
        }
        if !tiled && shape.hd.is_multiple_of(64) {
            // SAFETY: as above.
            unsafe { avx512::attention(out, q, k, v, shape) };
            return Ok(());
        }
    }
    let _ = simd;
    if tiled {
        attention_tiled_scalar(out, q, k, v, shape)
    } else {
        attention_one_chunk_scalar(out, q, k, v, shape)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{attention_scale, visible_keys, AttnShape, KvRows, MAX_HEAD_DIM};
    use half::f16;
    use std::arch::x86_64::*;

    /// `_mm512_reduce_add_ps` as GCC expands it (see `super::reduce16`), in registers:
    /// the high half plus the low half, then the high quarter plus the low quarter,
    /// then lanes (0, 1) plus (2, 3), then lane 0 plus lane 1.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn reduce16(x: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(x);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
        let t3 = _mm256_add_ps(hi, lo);
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
        let t8 = _mm_add_ps(t6, _mm_shuffle_ps::<0b01_00_11_10>(t6, t6));
        _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn ld16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn st16(p: *mut f16, x: __m512) {
        _mm256_storeu_si256(
            p as *mut __m256i,
            _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
        );
    }

    /// `hd % 64 == 0`, shapes checked by the caller.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn attention(
        out: &mut [f32],
        q: &[f32],
        k: KvRows<'_>,
        v: KvRows<'_>,
        shape: AttnShape,
    ) {
        let AttnShape { rows, hd, s, per } = shape;
        let scale = attention_scale(hd);
        let steps = hd / 64;
        for r in 0..rows {
            let vis = visible_keys(r, rows, per, s);
            let qr = q.as_ptr().add(r * hd);
            let o = out.as_mut_ptr().add(r * hd);
            let mut on = super::Online::new();
            match (k, v) {
                (KvRows::F16(k), KvRows::F16(v)) => {
                    let mut q16 = [f16::ZERO; MAX_HEAD_DIM];
                    let mut acc = [f16::ZERO; MAX_HEAD_DIM];
                    for c in (0..hd).step_by(16) {
                        st16(q16.as_mut_ptr().add(c), _mm512_loadu_ps(qr.add(c)));
                    }
                    for ic in 0..vis {
                        let kr = k.as_ptr().add(ic * hd);
                        let mut a = [_mm512_setzero_ps(); 4];
                        for i in 0..steps {
                            for (j, a) in a.iter_mut().enumerate() {
                                let e = 64 * i + 16 * j;
                                *a =
                                    _mm512_fmadd_ps(ld16(kr.add(e)), ld16(q16.as_ptr().add(e)), *a);
                            }
                        }
                        let s0 =
                            _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                        let (rescale, vs) = on.key(reduce16(s0) * scale + 0.0);
                        if let Some(ms) = rescale {
                            let m = _mm512_set1_ps(ms);
                            for c in (0..hd).step_by(16) {
                                let p = acc.as_mut_ptr().add(c);
                                st16(p, _mm512_mul_ps(ld16(p), m));
                            }
                        }
                        let w = _mm512_set1_ps(vs);
                        let vr = v.as_ptr().add(ic * hd);
                        for c in (0..hd).step_by(16) {
                            let p = acc.as_mut_ptr().add(c);
                            st16(p, _mm512_fmadd_ps(ld16(vr.add(c)), w, ld16(p)));
                        }
                    }
                    let inv = _mm512_set1_ps(on.inv());
                    for c in (0..hd).step_by(16) {
                        _mm512_storeu_ps(o.add(c), _mm512_mul_ps(ld16(acc.as_ptr().add(c)), inv));
                    }
                }
                (KvRows::F32(k), KvRows::F32(v)) => {
                    for c in (0..hd).step_by(16) {
                        _mm512_storeu_ps(o.add(c), _mm512_setzero_ps());
                    }
                    for ic in 0..vis {
                        let kr = k.as_ptr().add(ic * hd);
                        let mut a = [_mm512_setzero_ps(); 4];
                        for i in 0..steps {
                            for (j, a) in a.iter_mut().enumerate() {
                                let e = 64 * i + 16 * j;
                                *a = _mm512_fmadd_ps(
                                    _mm512_loadu_ps(kr.add(e)),
                                    _mm512_loadu_ps(qr.add(e)),
                                    *a,
                                );
                            }
                        }
                        let s0 =
                            _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                        let (rescale, vs) = on.key(reduce16(s0) * scale + 0.0);
                        if let Some(ms) = rescale {
                            let m = _mm512_set1_ps(ms);
                            for c in (0..hd).step_by(16) {
                                _mm512_storeu_ps(
                                    o.add(c),
                                    _mm512_mul_ps(_mm512_loadu_ps(o.add(c)), m),
                                );
                            }
                        }
                        let w = _mm512_set1_ps(vs);
                        let vr = v.as_ptr().add(ic * hd);
                        for c in (0..hd).step_by(16) {
                            let y = _mm512_fmadd_ps(
                                _mm512_loadu_ps(vr.add(c)),
                                w,
                                _mm512_loadu_ps(o.add(c)),
                            );
                            _mm512_storeu_ps(o.add(c), y);
                        }
                    }
                    let inv = _mm512_set1_ps(on.inv());
                    for c in (0..hd).step_by(16) {
                        _mm512_storeu_ps(o.add(c), _mm512_mul_ps(_mm512_loadu_ps(o.add(c)), inv));
                    }
                }
                // Refused by the caller's shape check.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn rng(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// f64 attention of the same (f16-rounded when `f16`) inputs.
    pub(super) fn exact(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        rows: usize,
        hd: usize,
        s: usize,
        per: usize,
    ) -> Vec<f64> {
        let mut out = vec![0f64; rows * hd];
        let scale = 1.0 / (hd as f64).sqrt();
        for r in 0..rows {
            let vis = visible_keys(r, rows, per, s);
            let sc: Vec<f64> = (0..vis)
                .map(|j| {
                    (0..hd)
                        .map(|d| q[r * hd + d] as f64 * k[j * hd + d] as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[r * hd + d] = (0..vis).map(|j| e[j] * v[j * hd + d] as f64).sum::<f64>() / z;
            }
        }
        out
    }

    fn case(rows: usize, hd: usize, s: usize, per: usize, f16kv: bool, seed: u64) {
        let mut sd = seed;
        let q: Vec<f32> = (0..rows * hd).map(|_| 3.0 * rng(&mut sd)).collect();
        let mut k: Vec<f32> = (0..s * hd).map(|_| rng(&mut sd)).collect();
        let mut v: Vec<f32> = (0..s * hd).map(|_| rng(&mut sd)).collect();
        let (k16, v16): (Vec<f16>, Vec<f16>) = (
            k.iter().map(|&x| f16::from_f32(x)).collect(),
            v.iter().map(|&x| f16::from_f32(x)).collect(),
        );
        if f16kv {
            k = k16.iter().map(|x| x.to_f32()).collect();
            v = v16.iter().map(|x| x.to_f32()).collect();
        }
        let (kr, vr) = if f16kv {
            (KvRows::F16(&k16), KvRows::F16(&v16))
        } else {
            (KvRows::F32(&k), KvRows::F32(&v))
        };
        let mut a = vec![0f32; rows * hd];
        let mut b = vec![0f32; rows * hd];
        attention_scalar(&mut a, &q, kr, vr, AttnShape { rows, hd, s, per }).unwrap();
        attention(&mut b, &q, kr, vr, AttnShape { rows, hd, s, per }, true).unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "element {i}: scalar {x} simd {y}");
        }
        // Against f64 attention of the stored keys/values: the query rounding to f16
        // moves each score by <= 2^-11 |q||k| (|.|_1 over hd terms), the f16 accumulator
        // adds <= 2^-11 relative per key update; values are in [-1, 1].
        let want = exact(&q, &k, &v, rows, hd, s, per);
        let bound = if f16kv {
            let score = 3.0 * hd as f64 * 2f64.powi(-11) / (hd as f64).sqrt();
            2.0 * score + (s as f64 + 2.0) * 2f64.powi(-10)
        } else {
            1e-5
        };
        for (i, (x, w)) in a.iter().zip(&want).enumerate() {
            assert!(
                (*x as f64 - w).abs() <= bound,
                "element {i}: {x} vs {w} (bound {bound})"
            );
        }
    }

    #[test]
    fn simd_is_bit_identical_to_the_spec_and_both_are_close_to_exact() {
        for (rows, hd, s, per) in [
            (1, 64, 1, 1),
            (3, 64, 17, 3),
            (6, 64, 40, 3),
            (2, 128, 9, 1),
            (4, 64, 300, 2),
            (2, 80, 5, 2),
            // Blocked kernel: GQA groups of 7 (blocks of 3, 3, 1), two tokens, key
            // chunks of 128 crossed, hd 128 and 256, and 320 (the memory-accumulator
            // kernel).
            (7, 64, 260, 7),
            (14, 64, 131, 7),
            (4, 128, 257, 2),
            (2, 256, 130, 2),
            (2, 320, 9, 2),
        ] {
            for f16kv in [false, true] {
                case(rows, hd, s, per, f16kv, rows as u64 * 31 + s as u64);
            }
        }
    }

    /// Every key a new maximum (scores rising key by key), then falling: each key
    /// rescales the accumulator, which the blocked kernel applies from its pass-2
    /// factors; the bits must still be the scalar's.
    #[test]
    fn rising_scores_rescale_every_key_bit_for_bit() {
        for hd in [64, 128, 256] {
            let (rows, per, s) = (3, 3, 2 * 150);
            let mut sd = hd as u64;
            let q: Vec<f32> = (0..rows * hd).map(|_| rng(&mut sd)).collect();
            let mut k = vec![0f32; s * hd];
            for j in 0..s {
                let f = if j < s / 2 { j as f32 } else { (s - j) as f32 } * 0.05;
                for d in 0..hd {
                    k[j * hd + d] = q[d] * f + 0.01 * rng(&mut sd);
                }
            }
            let v: Vec<f32> = (0..s * hd).map(|_| 4.0 * rng(&mut sd)).collect();
            let (k16, v16): (Vec<f16>, Vec<f16>) = (
                k.iter().map(|&x| f16::from_f32(x)).collect(),
                v.iter().map(|&x| f16::from_f32(x)).collect(),
            );
            let shape = AttnShape { rows, hd, s, per };
            for (kr, vr) in [
                (KvRows::F16(&k16), KvRows::F16(&v16)),
                (KvRows::F32(&k), KvRows::F32(&v)),
            ] {
                let mut a = vec![0f32; rows * hd];
                let mut b = vec![0f32; rows * hd];
                attention_scalar(&mut a, &q, kr, vr, shape).unwrap();
                attention(&mut b, &q, kr, vr, shape, true).unwrap();
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(x.to_bits(), y.to_bits(), "hd {hd} element {i}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let q = vec![0f32; 64];
        let k = vec![0f32; 64];
        let mut o = vec![0f32; 64];
        let kr = KvRows::F32(&k);
        assert!(attention(
            &mut o,
            &q,
            kr,
            kr,
            AttnShape {
                rows: 1,
                hd: 64,
                s: 1,
                per: 1
            },
            true
        )
        .is_ok());
        assert_eq!(
            attention(
                &mut o,
                &q,
                kr,
                kr,
                AttnShape {
                    rows: 1,
                    hd: 64,
                    s: 1,
                    per: 0
                },
                true
            ),
            Err(AttnShapeError::Per { rows: 1, per: 0 })
        );
        assert_eq!(
            attention(
                &mut o,
                &q,
                kr,
                kr,
                AttnShape {
                    rows: 1,
                    hd: 0,
                    s: 1,
                    per: 1
                },
                true
            ),
            Err(AttnShapeError::HeadDim(0))
        );
        assert!(matches!(
            attention(
                &mut o,
                &q,
                kr,
                kr,
                AttnShape {
                    rows: 1,
                    hd: 64,
                    s: 2,
                    per: 1
                },
                true
            ),
            Err(AttnShapeError::Len { .. })
        ));
        let k16 = vec![f16::ZERO; 64];
        assert_eq!(
            attention(
                &mut o,
                &q,
                kr,
                KvRows::F16(&k16),
                AttnShape {
                    rows: 1,
                    hd: 64,
                    s: 1,
                    per: 1
                },
                true
            ),
            Err(AttnShapeError::MixedTypes)
        );
        // Two query tokens, one key: token 0 would see none.
        let q2 = vec![0f32; 128];
        let mut o2 = vec![0f32; 128];
        assert_eq!(
            attention(
                &mut o2,
                &q2,
                kr,
                kr,
                AttnShape {
                    rows: 2,
                    hd: 64,
                    s: 1,
                    per: 1
                },
                true
            ),
            Err(AttnShapeError::Tokens { tokens: 2, s: 1 })
        );
    }
}
