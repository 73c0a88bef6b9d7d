//! Causal attention for a call of 64 or more query tokens, in the arithmetic of
//! llama.cpp's *tiled* CPU flash attention (`ggml_compute_forward_flash_attn_ext_tiled`,
//! ggml-cpu `ops.cpp`, llama-cpp-python 0.3.36, GCC, AVX-512F+DQ). llama.cpp's dispatcher
//! (`ggml_compute_forward_flash_attn_ext_f16`) takes this path instead of `one_chunk`
//! (the parent module) whenever the ubatch holds `neq1 >= GGML_FA_TILE_Q = 64` query
//! tokens, the query is f32 and K and V are both f16 or both f32: every prompt of 64+
//! tokens processed in one `llama_decode` ubatch. vtpu applies the same rule per DTATTN
//! call (a call is one ubatch: the runner's chunk).
//!
//! For each query row (token `t = r / per`, seeing keys `0..vis`), the keys in tiles of
//! [`TILE_KV`] = 64 aligned at key 0, in order:
//! - the query stays f32 (no f16 rounding); the K tile is converted to f32 (exact);
//! - score `j` is `simd_gemm`'s element: an FMA chain over the head dimension,
//!   ascending, from 0: `acc = fma(k[j][d], q[d], acc)`; then `* scale`, then the mask
//!   added (`+ 0.0` for a visible key, `-inf` for a masked one; keys past the end of the
//!   cache are `-inf` padding);
//! - the tile maximum; if it is `-inf` (all scores `-inf`: only with infinite inputs)
//!   the row's weights for the tile are 0 and `M`, `S` stay;
//! - `M_new = fmaxf(M, tile_max)`; if it grew, `ms = expf(M - M_new)` (libm) multiplies
//!   the f32 output row and `S` (two separate roundings);
//! - `S += ggml_vec_soft_max_f32(64, kq, kq, M_new)`: per 16-lane block `e =
//!   ggml_v_expf(kq - M_new)` (stored back as the weights; masked keys get exactly 0),
//!   the block's GCC `_mm512_reduce_add_ps` tree added to a **double** sum, and `S =
//!   (float)((double)S + sum)`;
//! - the output row `o[d] = fma(v[j][d], e[j], o[d])` for the tile's keys in order
//!   (`simd_gemm` continuing from the accumulator);
//! - at the end `o *= (S == 0 ? 0 : 1 / S)`.
//!
//! Two corners where llama.cpp's result depends on which rows share its 64-row Q tile
//! (that is on its thread chunking) are not modelled: a KV tile that is entirely masked
//! for this row but not for another row of its Q tile adds `0 * v` to the row, and the
//! padding keys of the last tile add `0 * v_stale`. Both add a zero, which changes
//! nothing unless the accumulator is exactly -0.0 (then it may become +0.0), and no later
//! operation tells the two zeros apart (the output is scaled, then quantized or summed).
//!
//! The scalar function is the specification; the AVX-512 one computes a block of up to
//! four rows at a time as `simd_gemm`'s micro-kernel does (the same per-element chains,
//! so the same bits; a test checks it).

use super::{attention_scale, check_shapes, visible_keys, AttnShape, AttnShapeError, KvRows};
use crate::ggml_math::v_expf;

/// `GGML_FA_TILE_Q`: the number of query tokens from which llama.cpp tiles.
pub const TILE_Q: usize = 64;
/// `GGML_FA_TILE_KV`: keys per tile.
pub const TILE_KV: usize = 64;

/// Whether a call takes llama.cpp's tiled path: `rows / per >= 64` query tokens.
pub fn is_tiled(shape: AttnShape) -> bool {
    shape.per > 0 && shape.rows / shape.per >= TILE_Q
}

/// Row `i` of `kv` (`hd` elements) in f32 (f16 converts exactly).
fn row_f32(kv: &KvRows<'_>, i: usize, hd: usize, dst: &mut [f32]) {
    match kv {
        KvRows::F32(x) => dst.copy_from_slice(&x[i * hd..(i + 1) * hd]),
        KvRows::F16(x) => {
            for (d, s) in dst.iter_mut().zip(&x[i * hd..(i + 1) * hd]) {
                *d = s.to_f32();
            }
        }
    }
}

/// The specification of the tiled path (module docs), for any call shape: `out[r]` for
/// every query row. Shapes as [`check_shapes`].
pub fn attention_tiled_scalar(
    out: &mut [f32],
    q: &[f32],
    k: KvRows<'_>,
    v: KvRows<'_>,
    shape: AttnShape,
) -> Result<(), AttnShapeError> {
    check_shapes(out.len(), q.len(), &k, &v, shape)?;
    let AttnShape { rows, hd, s, per } = shape;
    let scale = attention_scale(hd);
    let mut kq = [0f32; TILE_KV]; // one row's scores, then its weights
    let mut key = vec![0f32; hd]; // [hd]
    let mut val = vec![0f32; hd]; // [hd]
    for r in 0..rows {
        let vis = visible_keys(r, rows, per, s);
        let qr = &q[r * hd..(r + 1) * hd];
        let o = &mut out[r * hd..(r + 1) * hd];
        o.fill(0.0);
        let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
        // Tiles past `vis` are all masked for this row: skipped (see module docs).
        for ic in (0..vis).step_by(TILE_KV) {
            let in_cache = (s - ic).min(TILE_KV);
            let seen = (vis - ic).min(TILE_KV);
            for (j, x) in kq.iter_mut().enumerate() {
                *x = if j < seen {
                    row_f32(&k, ic + j, hd, &mut key);
                    let mut acc = 0f32;
                    for (&kd, &qd) in key.iter().zip(qr) {
                        acc = kd.mul_add(qd, acc);
                    }
                    acc * scale + 0.0
                } else {
                    // Masked (score + -inf) or padding: -inf either way for finite scores.
                    f32::NEG_INFINITY
                };
            }
            // ggml_vec_max_f32: MAX(max, x) = max > x ? max : x, from -inf.
            let tile_max = kq
                .iter()
                .fold(f32::NEG_INFINITY, |a, &x| if a > x { a } else { x });
            if tile_max == f32::NEG_INFINITY {
                // Only with -inf scores: llama.cpp zeroes the row's weights and still
                // adds them (zeros) to the output.
                kq.fill(0.0);
            } else {
                let m_new = m.max(tile_max);
                if m_new > m {
                    let ms = (m - m_new).exp();
                    for a in o.iter_mut() {
                        *a *= ms;
                    }
                    sum *= ms;
                }
                m = m_new;
                let mut tile_sum = 0f64;
                for block in kq.as_chunks_mut::<16>().0 {
                    for x in block.iter_mut() {
                        *x = v_expf(*x - m);
                    }
                    tile_sum += super::reduce16(block) as f64;
                }
                sum = (sum as f64 + tile_sum) as f32;
            }
            for (j, &w) in kq.iter().enumerate().take(in_cache) {
                row_f32(&v, ic + j, hd, &mut val);
                for (a, &x) in o.iter_mut().zip(&val) {
                    *a = x.mul_add(w, *a);
                }
            }
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for a in o.iter_mut() {
            *a *= inv;
        }
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::TILE_KV;
    use crate::attention::{attention_scale, avx512::reduce16, visible_keys, AttnShape, KvRows};
    use crate::ggml_math::avx512::v_expf;
    use std::arch::x86_64::*;

    /// Rows per block: `simd_gemm`'s `GEMM_RM` on AVX-512 (4 rows x 4 vectors = 16
    /// accumulators, enough independent FMA chains to hide the latency).
    const RM: usize = 4;

    /// One KV tile as the row blocks read it: the f32 keys transposed `[hd][64]` and
    /// the f32 value rows `[in_cache][hd]` (converted, or the cache itself when f32).
    struct Tile<'a> {
        kt: &'a [f32],   // [hd][TILE_KV]
        v: *const f32,   // [in_cache][hd]
        in_cache: usize, // keys of this tile in the cache (<= 64)
        ic: usize,       // first key of the tile
        hd: usize,
        scale: f32,
        shape: AttnShape,
    }

    /// The tiled path with AVX-512F: `hd % 16 == 0`, shapes checked by the caller.
    ///
    /// # Safety
    /// AVX-512F must be available; the slices must have the shapes of `shape`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn attention_tiled(
        out: &mut [f32],
        q: &[f32],
        k: KvRows<'_>,
        v: KvRows<'_>,
        shape: AttnShape,
    ) {
        let AttnShape { rows, hd, s, per } = shape;
        let tokens = rows / per;
        debug_assert!(hd.is_multiple_of(16));
        let scale = attention_scale(hd);
        let mut kt = vec![0f32; hd * TILE_KV]; // [hd][TILE_KV], the key tile transposed
        let mut v32 = match v {
            KvRows::F16(_) => vec![0f32; TILE_KV * hd], // [TILE_KV][hd]
            KvRows::F32(_) => Vec::new(),
        };
        let mut m = vec![f32::NEG_INFINITY; rows]; // running maximum per row
        let mut sum = vec![0f32; rows]; // running S per row
        out.fill(0.0);
        let mut krow = [0f32; 16];
        for ic in (0..s).step_by(TILE_KV) {
            let in_cache = (s - ic).min(TILE_KV);
            // Pack the tile (columns past `in_cache` keep stale finite values: their
            // scores are replaced by -inf).
            for j in 0..in_cache {
                for c in (0..hd).step_by(16) {
                    let x = match k {
                        KvRows::F16(k) => _mm512_cvtph_ps(_mm256_loadu_si256(
                            k.as_ptr().add((ic + j) * hd + c) as *const __m256i,
                        )),
                        KvRows::F32(k) => _mm512_loadu_ps(k.as_ptr().add((ic + j) * hd + c)),
                    };
                    _mm512_storeu_ps(krow.as_mut_ptr(), x);
                    for (l, &x) in krow.iter().enumerate() {
                        kt[(c + l) * TILE_KV + j] = x;
                    }
                }
            }
            let vp = match v {
                KvRows::F16(v) => {
                    for j in 0..in_cache {
                        for c in (0..hd).step_by(16) {
                            let p = v.as_ptr().add((ic + j) * hd + c) as *const __m256i;
                            _mm512_storeu_ps(
                                v32.as_mut_ptr().add(j * hd + c),
                                _mm512_cvtph_ps(_mm256_loadu_si256(p)),
                            );
                        }
                    }
                    v32.as_ptr()
                }
                KvRows::F32(v) => v.as_ptr().add(ic * hd),
            };
            let tile = Tile {
                kt: &kt,
                v: vp,
                in_cache,
                ic,
                hd,
                scale,
                shape,
            };
            // Token t sees this tile iff s - tokens + t + 1 > ic; rows before the first
            // such token are all masked here (skipped, see the module docs).
            let first = (ic + tokens).saturating_sub(s) * per;
            let mut r = first;
            while r < rows {
                let n = (rows - r).min(RM);
                match n {
                    4 => block::<4>(&tile, r, q, out, &mut m, &mut sum),
                    3 => block::<3>(&tile, r, q, out, &mut m, &mut sum),
                    2 => block::<2>(&tile, r, q, out, &mut m, &mut sum),
                    _ => block::<1>(&tile, r, q, out, &mut m, &mut sum),
                }
                r += n;
            }
        }
        for (r, &s) in sum.iter().enumerate() {
            let inv = _mm512_set1_ps(if s == 0.0 { 0.0 } else { 1.0 / s });
            let o = out.as_mut_ptr().add(r * hd);
            for c in (0..hd).step_by(16) {
                _mm512_storeu_ps(o.add(c), _mm512_mul_ps(_mm512_loadu_ps(o.add(c)), inv));
            }
        }
    }

    /// Rows `r0..r0 + N` over one tile: scores, online softmax, value sum.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const N: usize>(
        t: &Tile<'_>,
        r0: usize,
        q: &[f32],
        out: &mut [f32],
        m: &mut [f32],
        sum: &mut [f32],
    ) {
        let hd = t.hd;
        // Scores: [N][4 x 16], each an FMA chain over d from 0 (simd_gemm's ukernel).
        let mut acc = [[_mm512_setzero_ps(); 4]; N];
        let kt = t.kt.as_ptr();
        let qp = q.as_ptr().add(r0 * hd);
        for d in 0..hd {
            let b = [
                _mm512_loadu_ps(kt.add(d * TILE_KV)),
                _mm512_loadu_ps(kt.add(d * TILE_KV + 16)),
                _mm512_loadu_ps(kt.add(d * TILE_KV + 32)),
                _mm512_loadu_ps(kt.add(d * TILE_KV + 48)),
            ];
            for (i, a) in acc.iter_mut().enumerate() {
                let p = _mm512_set1_ps(*qp.add(i * hd + d));
                for (a, &b) in a.iter_mut().zip(&b) {
                    *a = _mm512_fmadd_ps(b, p, *a);
                }
            }
        }
        // Softmax per row; the weights [N][64] for the value sum.
        let mut w = [[0f32; TILE_KV]; N];
        let AttnShape { rows, per, s, .. } = t.shape;
        let (scale, zero, ninf) = (
            _mm512_set1_ps(t.scale),
            _mm512_setzero_ps(),
            _mm512_set1_ps(f32::NEG_INFINITY),
        );
        for (i, (a, w)) in acc.iter().zip(w.iter_mut()).enumerate() {
            let r = r0 + i;
            let seen = (visible_keys(r, rows, per, s) - t.ic).min(TILE_KV);
            let mut x = [zero; 4];
            for (c, (x, &a)) in x.iter_mut().zip(a).enumerate() {
                let lanes = seen.saturating_sub(16 * c).min(16);
                let keep: __mmask16 = ((1u32 << lanes) - 1) as __mmask16;
                let sc = _mm512_add_ps(_mm512_mul_ps(a, scale), zero);
                *x = _mm512_mask_blend_ps(keep, ninf, sc);
            }
            let tile_max = _mm512_reduce_max_ps(_mm512_max_ps(
                _mm512_max_ps(x[0], x[1]),
                _mm512_max_ps(x[2], x[3]),
            ));
            if tile_max == f32::NEG_INFINITY {
                // Only with -inf scores: the weights stay 0 (llama.cpp zeroes the row).
                continue;
            }
            let m_new = m[r].max(tile_max);
            if m_new > m[r] {
                let ms = (m[r] - m_new).exp();
                let msv = _mm512_set1_ps(ms);
                let o = out.as_mut_ptr().add(r * hd);
                for c in (0..hd).step_by(16) {
                    _mm512_storeu_ps(o.add(c), _mm512_mul_ps(_mm512_loadu_ps(o.add(c)), msv));
                }
                sum[r] *= ms;
            }
            m[r] = m_new;
            let mv = _mm512_set1_ps(m_new);
            let mut tile_sum = 0f64;
            for (c, &x) in x.iter().enumerate() {
                let e = v_expf(_mm512_sub_ps(x, mv));
                _mm512_storeu_ps(w.as_mut_ptr().add(16 * c), e);
                tile_sum += reduce16(e) as f64;
            }
            sum[r] = (sum[r] as f64 + tile_sum) as f32;
        }
        // Value sum: out[r0 + i][cols] += w[i][j] * v[j][cols], j ascending, by column
        // groups of up to 4 vectors.
        let mut c = 0;
        while c < hd {
            match (hd - c) / 16 {
                1 => values::<N, 1>(t, r0, c, &w, out),
                2 => values::<N, 2>(t, r0, c, &w, out),
                3 => values::<N, 3>(t, r0, c, &w, out),
                _ => values::<N, 4>(t, r0, c, &w, out),
            }
            c += 64;
        }
    }

    /// `out[r0 + i][c .. c + 16 V] = fma(v[j][..], w[i][j], out[..])` for the tile's keys.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn values<const N: usize, const V: usize>(
        t: &Tile<'_>,
        r0: usize,
        c: usize,
        w: &[[f32; TILE_KV]; N],
        out: &mut [f32],
    ) {
        let hd = t.hd;
        let o = out.as_mut_ptr().add(r0 * hd + c);
        let mut acc = [[_mm512_setzero_ps(); V]; N];
        for (i, a) in acc.iter_mut().enumerate() {
            for (l, a) in a.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(o.add(i * hd + 16 * l));
            }
        }
        let vp = t.v.add(c);
        for j in 0..t.in_cache {
            let mut b = [_mm512_setzero_ps(); V];
            for (l, b) in b.iter_mut().enumerate() {
                *b = _mm512_loadu_ps(vp.add(j * hd + 16 * l));
            }
            for (a, w) in acc.iter_mut().zip(w) {
                let p = _mm512_set1_ps(w[j]);
                for (a, &b) in a.iter_mut().zip(&b) {
                    *a = _mm512_fmadd_ps(b, p, *a);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            for (l, &a) in a.iter().enumerate() {
                _mm512_storeu_ps(o.add(i * hd + 16 * l), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::tests::{exact, rng};
    use crate::attention::{attention, attention_one_chunk_scalar};
    use half::f16;

    /// Random queries (`qmul` times [-1, 1]), keys and values in [-1, 1]; with `f16kv`
    /// the keys and values are f16 and the returned f32 copies are their exact values.
    struct Case {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        k16: Vec<f16>,
        v16: Vec<f16>,
        shape: AttnShape,
        f16kv: bool,
    }

    impl Case {
        fn new(
            tokens: usize,
            per: usize,
            s: usize,
            hd: usize,
            f16kv: bool,
            qmul: f32,
            seed: u64,
        ) -> Case {
            let mut sd = seed;
            let rows = tokens * per;
            let q: Vec<f32> = (0..rows * hd).map(|_| qmul * rng(&mut sd)).collect();
            let mut k: Vec<f32> = (0..s * hd).map(|_| rng(&mut sd)).collect();
            let mut v: Vec<f32> = (0..s * hd).map(|_| rng(&mut sd)).collect();
            let k16: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            if f16kv {
                k = k16.iter().map(|x| x.to_f32()).collect();
                v = v16.iter().map(|x| x.to_f32()).collect();
            }
            Case {
                q,
                k,
                v,
                k16,
                v16,
                shape: AttnShape { rows, hd, s, per },
                f16kv,
            }
        }

        fn kv(&self) -> (KvRows<'_>, KvRows<'_>) {
            if self.f16kv {
                (KvRows::F16(&self.k16), KvRows::F16(&self.v16))
            } else {
                (KvRows::F32(&self.k), KvRows::F32(&self.v))
            }
        }

        fn spec(&self) -> Vec<f32> {
            let (k, v) = self.kv();
            let mut o = vec![f32::NAN; self.q.len()];
            attention_tiled_scalar(&mut o, &self.q, k, v, self.shape).unwrap();
            o
        }

        fn dispatched(&self, simd: bool) -> Vec<f32> {
            let (k, v) = self.kv();
            let mut o = vec![f32::NAN; self.q.len()];
            attention(&mut o, &self.q, k, v, self.shape, simd).unwrap();
            o
        }
    }

    fn assert_bits(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}: element {i}: {x} vs {y}");
        }
    }

    /// (tokens, per, s, hd): one tile; GQA rows whose 4-row blocks straddle tokens; a
    /// cache longer than the call (tiles every row sees whole); partial last tiles;
    /// head dimensions that leave 1..3 vectors in the last column group.
    const SHAPES: [(usize, usize, usize, usize); 10] = [
        (64, 1, 64, 64),
        (64, 3, 64, 64),
        (65, 3, 130, 64),
        (100, 2, 100, 128),
        (64, 1, 200, 64),
        (70, 3, 70, 80),
        (64, 2, 64, 48),
        (66, 1, 66, 16),
        (130, 3, 300, 64),
        (64, 5, 129, 32),
    ];

    #[test]
    fn simd_is_bit_identical_to_the_spec() {
        // qmul 40: score gaps of hundreds, so `ms` and many weights underflow (exp of
        // -100 and below: subnormal and zero weights, rescales by 0).
        for (n, &(t, per, s, hd)) in SHAPES.iter().enumerate() {
            for f16kv in [false, true] {
                for qmul in [3.0, 40.0] {
                    let c = Case::new(t, per, s, hd, f16kv, qmul, 7 + n as u64);
                    let what = format!("T {t} per {per} s {s} hd {hd} f16 {f16kv} q x{qmul}");
                    let spec = c.spec();
                    assert_bits(&spec, &c.dispatched(true), &what);
                    assert_bits(&spec, &c.dispatched(false), &what);
                }
            }
        }
    }

    #[test]
    fn the_spec_is_close_to_exact_attention() {
        for (n, &(t, per, s, hd)) in SHAPES.iter().enumerate() {
            for f16kv in [false, true] {
                let c = Case::new(t, per, s, hd, f16kv, 3.0, 100 + n as u64);
                let got = c.spec();
                let want = exact(&c.q, &c.k, &c.v, c.shape.rows, hd, s, per);
                // f32 throughout (the f16 keys and values are exact inputs): a score is
                // off by <= hd 2^-24 sum|q k| * scale <= 3 hd^1.5 2^-24, a weight by
                // twice that relative plus ggml_v_expf's 2 ulp, and the value sum of
                // up to s terms in [-1, 1] adds <= s 2^-24 relative per term.
                let score = 3.0 * (hd as f64).powf(1.5) * 2f64.powi(-24);
                let bound = 4.0 * score + (s as f64 + 16.0) * 2f64.powi(-23);
                for (i, (x, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*x as f64 - w).abs() <= bound,
                        "T {t} per {per} s {s} hd {hd} f16 {f16kv}: element {i}: {x} vs {w} (bound {bound:e})"
                    );
                }
            }
        }
    }

    #[test]
    fn llama_cpp_tiles_from_64_query_tokens() {
        let shape = |t, per| AttnShape {
            rows: t * per,
            hd: 64,
            s: 100,
            per,
        };
        assert!(!is_tiled(shape(63, 3)));
        assert!(is_tiled(shape(64, 3)));
        assert!(is_tiled(shape(64, 1)));
        assert!(!is_tiled(AttnShape {
            rows: 64,
            hd: 64,
            s: 100,
            per: 0
        }));
        // 63 tokens: one_chunk's bits; 64: the tiled ones, which differ (f16 query and
        // accumulator against f32 ones) on random f16 data.
        for (t, want_tiled) in [(63, false), (64, true)] {
            let c = Case::new(t, 3, 90, 64, true, 3.0, 5);
            let (k, v) = c.kv();
            let mut one = vec![0f32; c.q.len()];
            attention_one_chunk_scalar(&mut one, &c.q, k, v, c.shape).unwrap();
            let tiled = c.spec();
            let got = c.dispatched(true);
            assert_bits(
                &got,
                if want_tiled { &tiled } else { &one },
                &format!("T {t}"),
            );
            assert!(
                one.iter().zip(&tiled).any(|(a, b)| a != b),
                "T {t}: the paths agree everywhere"
            );
        }
    }

    #[test]
    fn each_row_is_computed_alone() {
        // A GQA call (3 heads per token, 4-row SIMD blocks straddling tokens) gives each
        // head the bits of a call of that head alone: no arithmetic crosses rows.
        let (t, per, s, hd) = (70, 3, 150, 64);
        for f16kv in [false, true] {
            let c = Case::new(t, per, s, hd, f16kv, 3.0, 11);
            let all = c.dispatched(true);
            for h in 0..per {
                let q: Vec<f32> = (0..t)
                    .flat_map(|tok| c.q[(tok * per + h) * hd..][..hd].to_vec())
                    .collect();
                let (k, v) = c.kv();
                let mut o = vec![0f32; t * hd];
                let one = AttnShape {
                    rows: t,
                    hd,
                    s,
                    per: 1,
                };
                attention(&mut o, &q, k, v, one, true).unwrap();
                for tok in 0..t {
                    assert_bits(
                        &o[tok * hd..][..hd],
                        &all[(tok * per + h) * hd..][..hd],
                        &format!("f16 {f16kv} head {h} token {tok}"),
                    );
                }
            }
        }
    }

    #[test]
    fn keys_a_row_does_not_see_leave_it_unchanged() {
        // Causality: replacing the keys and values past token 0's last visible key must
        // not move token 0's output (nor anything of the cache's last tile padding).
        let (t, per, s, hd) = (64, 2, 100, 64);
        for f16kv in [false, true] {
            let mut c = Case::new(t, per, s, hd, f16kv, 3.0, 13);
            let before = c.dispatched(true);
            let first_hidden = s - t + 1; // token 0 sees keys 0..s - T + 1
            for i in first_hidden * hd..s * hd {
                c.k[i] = -c.k[i] * 0.5;
                c.v[i] = 1.0 - c.v[i];
                c.k16[i] = f16::from_f32(c.k[i]);
                c.v16[i] = f16::from_f32(c.v[i]);
            }
            let after = c.dispatched(true);
            assert_bits(&before[..per * hd], &after[..per * hd], "token 0");
            assert_bits(&c.spec()[..per * hd], &after[..per * hd], "token 0, spec");
            assert!(
                before[per * hd..] != after[per * hd..],
                "later tokens see the change"
            );
        }
    }
}
