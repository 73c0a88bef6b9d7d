//! "R8": Q4_0 / Q5_0 / Q8_0 weights repacked once at load into groups of 8 interleaved
//! rows, and the m = 1 GEMV (decode) over them with 512-bit VNNI.
//!
//! Why: the GEMV on the ggml layout (`gemm.rs`, 1 x 4 tiles on 256-bit vectors) is
//! compute-bound for these formats; most of its instructions convert one row's scale at
//! a time and sum lanes horizontally per row. In R8 a 512-bit vector holds 2 (Q8_0) or
//! 4 (Q4_0, Q5_0) rows of a block, the 8 rows' scales come with one 16-byte load, and
//! the whole tensor is one sequential stream.
//!
//! Layout (the loader and the fallback path rely on exactly this). A `rows x k` tensor
//! (`rows % 8 == 0`, `k % 32 == 0`) of base type T keeps T's size. Group `g` (rows
//! `8g..8g+8`) occupies bytes `[g * 8 * row_bytes, (g + 1) * 8 * row_bytes)`, so any
//! range of whole groups is itself an R8 tensor. Inside a group, block `b` of the 8 rows
//! is a superblock of `8 * T::BYTES` bytes at `b * 8 * T::BYTES`:
//!
//! | base | bytes | superblock layout |
//! |------|-------|-------------------|
//! | Q8_0 | 272 | `[0,16)` the 8 rows' f16 `d` (row 0 first); `[16,272)` the 32 i8 quants of row 0, row 1, ..., row 7 |
//! | Q4_0 | 144 | `[0,16)` the 8 `d`; `[16,144)` the 16 nibble bytes of rows 0..7 (ggml packing: byte i = element i low, i + 16 high) |
//! | Q5_0 | 176 | `[0,16)` the 8 `d`; `[16,48)` four little-endian u64 masks of 5th bits: `[16,24)` bits 0..16 of `qh` of rows 0..3 (row r at bits `16r..16r+16`), `[24,32)` bits 16..32 of `qh` of rows 0..3, `[32,40)` / `[40,48)` the same for rows 4..7; `[48,176)` nibbles of rows 0..7 |
//!
//! The layout is written down once, as byte moves per row ([`moves`]), which repack,
//! unrepack and [`r8_row`] all use.
//!
//! Numerics: exactly those of `dot_ref.rs` (and so of every other level): the same exact
//! integers per block and lane, then the same f32 operations in the same order per
//! output (see [`gemv_r8_vnni`]); tested bit for bit against the scalar specification.
//!
//! Measured (`examples/r8_bench.rs`, one Zen 4 core under KVM, shared machine, GB/s of
//! weight bytes, m = 1 from cache): Q8_0 ~66-70 (ggml layout ~41), Q4_0 ~34-40 (~19),
//! Q5_0 ~28-33 (~15). From DRAM both layouts sit near one core's ~20-25 GB/s. What
//! limits Q5_0: per superblock 4 `vpdpbusd` + 4 `vcvtdq2ps` + 4 FMA (the 8-lane numerics
//! need all of them) plus 4 mask-register loads and 10 ops to merge the 5th bits.

#[cfg(target_arch = "x86_64")]
use super::act::ActView;
use super::blocks::QK;
use super::QuantType;
use crate::error::check;
use crate::KernelError;

/// Rows per R8 group.
pub const R8_ROWS: usize = 8;

/// Whether `base` has an R8 layout (Q4_0, Q5_0, Q8_0).
pub fn r8_supported(base: QuantType) -> bool {
    matches!(base, QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0)
}

/// One field of a block: `len` bytes at `src` in the ggml block go to `dst` in the
/// superblock.
#[derive(Clone, Copy)]
struct Move {
    src: usize,
    dst: usize,
    len: usize,
}

/// The fields of row `r` (0..8) of a block of `base`, as moves into its superblock. This
/// is the single definition of the layout (module doc).
#[inline(always)]
fn moves(base: QuantType, r: usize) -> ([Move; 4], usize) {
    let m = |src, dst, len| Move { src, dst, len };
    let none = m(0, 0, 0);
    let d = m(0, 2 * r, 2);
    match base {
        QuantType::Q8_0 => ([d, m(2, 16 + 32 * r, 32), none, none], 2),
        QuantType::Q4_0 => ([d, m(2, 16 + 16 * r, 16), none, none], 2),
        QuantType::Q5_0 => {
            // qh is a little-endian u32: its bytes 0..2 are the low 16 bits (elements
            // 0..16), bytes 2..4 the high ones; row r % 4 sits at bits 16 (r % 4) of the
            // u64 mask of its row quad, i.e. at byte 2 (r % 4).
            let quad = 16 * (r / 4) + 2 * (r % 4);
            let lo = m(2, 16 + quad, 2);
            let hi = m(4, 24 + quad, 2);
            ([d, lo, hi, m(6, 48 + 16 * r, 16)], 4)
        }
        _ => ([none; 4], 0),
    }
}

/// Checks `base`, `rows` and `k` for an R8 tensor and that `lens` (operand name, length)
/// each hold `rows` rows; returns the bytes of one row.
fn check_r8(
    op: &'static str,
    base: QuantType,
    rows: usize,
    k: usize,
    lens: &[(&str, usize)],
) -> Result<usize, KernelError> {
    if !r8_supported(base) {
        return Err(KernelError::Unsupported {
            op,
            detail: format!("{base} has no R8 layout (only q4_0, q5_0, q8_0)"),
        });
    }
    if !rows.is_multiple_of(R8_ROWS) {
        return Err(check::err(
            op,
            format!("rows = {rows} is not a multiple of {R8_ROWS}"),
        ));
    }
    let row_bytes = base.row_bytes(k).ok_or_else(|| {
        check::err(
            op,
            format!("k = {k} is not a whole number of {base} blocks of {QK} elements"),
        )
    })?;
    let total = check::mul(op, "rows x row bytes", rows, row_bytes)?;
    for &(what, len) in lens {
        if len != total {
            return Err(check::err(
                op,
                format!(
                    "{what}: expected {total} bytes ({rows} rows x {row_bytes} of {base}), got {len}"
                ),
            ));
        }
    }
    Ok(row_bytes)
}

/// Calls `f(at_row, at_group, len)` for every field of row `r` (0..8) of an R8 group:
/// `len` bytes at `at_row` in the row's ggml bytes live at `at_group` in the group.
#[inline(always)]
fn for_each_field(
    base: QuantType,
    row_bytes: usize,
    r: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let bb = base.block_bytes();
    let (mv, n) = moves(base, r);
    for b in 0..row_bytes / bb {
        for m in &mv[..n] {
            f(b * bb + m.src, b * R8_ROWS * bb + m.dst, m.len);
        }
    }
}

/// Original ggml layout (`rows` x `k`, `src.len() == rows * row_bytes`) -> R8 (`dst` the
/// same length). Errors: unsupported type, `rows % 8 != 0`, `k` not whole blocks, wrong
/// lengths.
pub fn repack_r8(
    base: QuantType,
    src: &[u8],
    rows: usize,
    k: usize,
    dst: &mut [u8],
) -> Result<(), KernelError> {
    let lens = [("src (ggml layout)", src.len()), ("dst (R8)", dst.len())];
    let row_bytes = check_r8("repack_r8", base, rows, k, &lens)?;
    shuffle_groups::<true>(base, src, dst, row_bytes);
    Ok(())
}

/// The inverse of [`repack_r8`] (R8 -> original ggml layout), same checks.
pub fn unrepack_r8(
    base: QuantType,
    src: &[u8],
    rows: usize,
    k: usize,
    dst: &mut [u8],
) -> Result<(), KernelError> {
    let lens = [("src (R8)", src.len()), ("dst (ggml layout)", dst.len())];
    let row_bytes = check_r8("unrepack_r8", base, rows, k, &lens)?;
    shuffle_groups::<false>(base, src, dst, row_bytes);
    Ok(())
}

/// Every field of the whole groups in `src` moved to `dst`: ggml layout -> R8 when
/// `TO_R8`, else back. One arm per type with the type a constant, so [`moves`] folds
/// and each copy is a few vector moves instead of a `memcpy` call (models repack
/// hundreds of MB at load).
fn shuffle_groups<const TO_R8: bool>(
    base: QuantType,
    src: &[u8],
    dst: &mut [u8],
    row_bytes: usize,
) {
    match base {
        QuantType::Q8_0 => shuffle::<TO_R8>(QuantType::Q8_0, src, dst, row_bytes),
        QuantType::Q4_0 => shuffle::<TO_R8>(QuantType::Q4_0, src, dst, row_bytes),
        QuantType::Q5_0 => shuffle::<TO_R8>(QuantType::Q5_0, src, dst, row_bytes),
        _ => {}
    }
}

#[inline(always)]
fn shuffle<const TO_R8: bool>(base: QuantType, src: &[u8], dst: &mut [u8], row_bytes: usize) {
    let group = R8_ROWS * row_bytes;
    for (gs, gd) in src.chunks_exact(group).zip(dst.chunks_exact_mut(group)) {
        for r in 0..R8_ROWS {
            for_each_field(base, row_bytes, r, |at_row, at_group, len| {
                let at_row = r * row_bytes + at_row;
                if TO_R8 {
                    gd[at_group..at_group + len].copy_from_slice(&gs[at_row..at_row + len]);
                } else {
                    gd[at_row..at_row + len].copy_from_slice(&gs[at_group..at_group + len]);
                }
            });
        }
    }
}

/// Row `row` of the R8 tensor `src` (whole groups of `k` columns) in the ORIGINAL ggml
/// layout into `dst` (one row, `row_bytes` long). Used for embedding lookups of tied
/// weights. Errors on an out-of-range row or wrong lengths.
pub fn r8_row(
    base: QuantType,
    src: &[u8],
    row: usize,
    k: usize,
    dst: &mut [u8],
) -> Result<(), KernelError> {
    const OP: &str = "r8_row";
    // The type and `k` checks of one group; the lengths are checked below.
    let row_bytes = check_r8(OP, base, R8_ROWS, k, &[])?;
    let group = R8_ROWS * row_bytes;
    if group == 0 || !src.len().is_multiple_of(group) {
        return Err(check::err(
            OP,
            format!(
                "src: {} bytes is not a whole number of R8 groups of {group} bytes \
                 ({R8_ROWS} rows x {row_bytes} of {base})",
                src.len()
            ),
        ));
    }
    let rows = src.len() / group * R8_ROWS;
    if row >= rows {
        return Err(check::err(
            OP,
            format!("row {row} is out of range: the R8 tensor has {rows} rows"),
        ));
    }
    check::len(OP, "dst (one ggml row, bytes)", row_bytes, dst.len())?;
    let g = row / R8_ROWS;
    let gr = &src[g * group..(g + 1) * group];
    for_each_field(base, row_bytes, row % R8_ROWS, |at_row, at_group, len| {
        dst[at_row..at_row + len].copy_from_slice(&gr[at_group..at_group + len]);
    });
    Ok(())
}

/// m = 1 GEMV on R8 weights at the AVX-512 VNNI level: `c[j] += dot(act row 0, weight
/// row j)` for `j in 0..nw`, `nw % 8 == 0`, `w` = `nw / 8` whole groups, `act` the
/// activation row already quantized to Q8_0 (block 32: `act.qs[0..k]`, `act.d[0..k/32]`).
///
/// Bit-identical to `dot_ref::matmul(c, act, base, original_layout_w, 1, k, nw)`:
/// - Q8_0, Q5_0: per output 8 f32 lanes, lane `l` of block `b` the exact i32 sum of the
///   products of elements `4l..4l+4`, `acc[l] = fma(d_w * d_a, lane, acc[l])`, then the
///   `hsum_float_8` tree and `c[j] += sum`;
/// - Q4_0: one chain per output, `chain = fma(t, d_w * d_a, chain)` with `t` the block's
///   whole i32 sum, then `c[j] += chain`.
///
/// # Safety
/// The CPU has avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni. Shapes as
/// stated; they are checked again here and the call does nothing if they are wrong.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn gemv_r8_vnni(
    base: QuantType,
    c: &mut [f32],
    act: &ActView<'_>,
    w: &[u8],
    k: usize,
    nw: usize,
) {
    let Some(row_bytes) = base.row_bytes(k) else {
        return;
    };
    let nb = k / QK;
    let enough = nw
        .checked_mul(row_bytes)
        .is_some_and(|need| w.len() >= need);
    if !r8_supported(base)
        || !nw.is_multiple_of(R8_ROWS)
        || !enough
        || c.len() < nw
        || act.block != QK
        || act.qs.len() < k
        || act.d.len() < nb
        || nb == 0
    {
        return; // defensive: the callers check these; never touch memory on bad shapes
    }
    x86::with_corr(|corr| {
        if corr.len() < 8 * nb {
            corr.resize(8 * nb, 0);
        }
        // SAFETY: the CPU features are the caller's contract; `act.qs` holds `k` quants.
        unsafe { x86::prepare(base, act.qs.as_ptr(), nb, corr.as_mut_ptr()) };
        let g = x86::Gemv {
            c: c.as_mut_ptr(),
            aq: act.qs.as_ptr(),
            ad: act.d.as_ptr(),
            corr: corr.as_ptr(),
            w: w.as_ptr(),
            nb,
            groups: nw / R8_ROWS,
        };
        // SAFETY: as above; `g` describes `nw / 8` whole groups of `nb` superblocks
        // inside `w`, `nw` outputs in `c`, `k` activations and `8 nb` corrections.
        unsafe {
            match base {
                QuantType::Q4_0 => x86::q4_0(&g),
                QuantType::Q5_0 => x86::q5_0(&g),
                QuantType::Q8_0 => x86::q8_0(&g),
                _ => {}
            }
        }
    });
}

/// Test and benchmark hook: quantizes the activation row `a` (`k` floats) to Q8_0 as a
/// matmul call does, then runs [`gemv_r8_vnni`] on the R8 weights `w` (`nw` rows):
/// `c[j] += dot(a, row j)`. Errors on bad shapes, or `Unsupported` when the CPU lacks
/// AVX-512 VNNI.
#[doc(hidden)]
pub fn gemv_r8_for_tests(
    base: QuantType,
    c: &mut [f32],
    a: &[f32],
    w: &[u8],
    k: usize,
    nw: usize,
) -> Result<(), KernelError> {
    const OP: &str = "gemv_r8_for_tests";
    check_r8(OP, base, nw, k, &[("w (R8)", w.len())])?;
    check::len(OP, "a (k)", k, a.len())?;
    check::len(OP, "c (nw)", nw, c.len())?;
    let imp = super::QuantImpl::Avx512Vnni;
    if !imp.is_supported() {
        return Err(KernelError::Unsupported {
            op: OP,
            detail: "the R8 GEMV needs AVX-512 VNNI, which this CPU lacks".into(),
        });
    }
    if k == 0 || nw == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    super::act::with_scratch(|buf| {
        super::act::quantize_rows(imp, QuantType::Q8_0, a, 1, k, buf);
        // SAFETY: AVX-512 VNNI (with F, BW, VL and AVX2 / FMA / F16C) checked above;
        // shapes checked above (and again inside).
        unsafe { gemv_r8_vnni(base, c, &buf.view(QuantType::Q8_0, 1, k), w, k, nw) }
    });
    Ok(())
}

/// The AVX-512 VNNI kernels. One group of 8 rows at a time over all of `k`, so the
/// weights are read in address order (one sequential stream). No software prefetch:
/// the hardware prefetchers serve this single stream at the DRAM bandwidth of one core
/// (measured: cold Q4_0 ~23-24 GB/s, the same as a plain vector sum), and a linear
/// prefetch 4 KiB ahead (as `gemm.rs` needs for its interleaved rows) did not help.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use std::cell::RefCell;

    use super::QuantType;

    thread_local! {
        /// The activation corrections of the current call (reused: no allocation in the
        /// steady state).
        static CORR: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    }

    /// Runs `f` with this thread's correction buffer (a fresh one in the impossible case
    /// that it is already borrowed, rather than panicking).
    pub(super) fn with_corr<R>(f: impl FnOnce(&mut Vec<i32>) -> R) -> R {
        CORR.with(|cell| match cell.try_borrow_mut() {
            Ok(mut v) => f(&mut v),
            Err(_) => f(&mut Vec::new()),
        })
    }

    /// The per-block offset corrections, computed once per call instead of once per
    /// group: for block `b`, `corr[8b + l] = -o * (a[4l] + ... + a[4l + 3])` with the
    /// offset `o` that turns the weights unsigned for `vpdpbusd` (Q8_0: `q ^ 0x80 = q +
    /// 128`; Q5_0: 16; Q4_0: 8). Q4_0 only needs whole-block sums, so its lanes 4..8 are
    /// folded into lanes 0..4 (and zeroed).
    ///
    /// # Safety
    /// AVX-512 VNNI (+ VL); `aq` holds `32 nb` quants, `corr` room for `8 nb` i32.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn prepare(base: QuantType, aq: *const i8, nb: usize, corr: *mut i32) {
        let o = match base {
            QuantType::Q8_0 => i8::MIN,
            QuantType::Q5_0 => 16,
            _ => 8,
        };
        let ov = _mm256_set1_epi8(o);
        for b in 0..nb {
            let a = _mm256_loadu_si256(aq.add(32 * b) as *const __m256i);
            let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ov, a);
            let mut v = _mm256_sub_epi32(_mm256_setzero_si256(), s);
            if base == QuantType::Q4_0 {
                let lo = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                v = _mm256_zextsi128_si256(lo);
            }
            _mm256_storeu_si256(corr.add(8 * b) as *mut __m256i, v);
        }
    }

    /// One GEMV call as raw parts (validated by `gemv_r8_vnni`).
    pub(super) struct Gemv {
        /// `groups * 8` outputs.
        pub(super) c: *mut f32,
        /// `nb * 32` activation quants and `nb` scales.
        pub(super) aq: *const i8,
        pub(super) ad: *const f32,
        /// Per block, 8 i32: the activation offset correction (see [`prepare`]).
        pub(super) corr: *const i32,
        /// `groups` groups of `nb` superblocks.
        pub(super) w: *const u8,
        pub(super) nb: usize,
        pub(super) groups: usize,
    }

    /// The 8 products `d_w[r] * d_a` (f16 -> f32 exact, one rounding each, as the
    /// scalar `dw * a.d[blk]`), in the low half of a zmm.
    #[inline(always)]
    unsafe fn scales(blk: *const u8, da: f32) -> __m512 {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_set1_ps(da)))
    }

    #[inline(always)]
    unsafe fn idx(v: [i32; 16]) -> __m512i {
        _mm512_loadu_si512(v.as_ptr() as *const _)
    }

    /// The last steps of the `hsum_float_8` tree for 8 rows: `x` holds in its 128-bit
    /// lane `j` the first step `v[i] + v[i + 4]` (i = 0..4) of row `j`, `y` of row
    /// `j + 4`. Then `(s[0] + s[2]) + (s[1] + s[3])` per lane and `c[0..8] += rows`.
    #[inline(always)]
    unsafe fn finish_tree(c: *mut f32, x: __m512, y: __m512) {
        let x = _mm512_add_ps(x, _mm512_permute_ps::<0x4e>(x));
        let x = _mm512_add_ps(x, _mm512_permute_ps::<0xb1>(x));
        let y = _mm512_add_ps(y, _mm512_permute_ps::<0x4e>(y));
        let y = _mm512_add_ps(y, _mm512_permute_ps::<0xb1>(y));
        let pick = idx([0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0]);
        let rows = _mm512_castps512_ps256(_mm512_permutex2var_ps(x, pick, y));
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), rows));
    }

    /// Q8_0: superblocks of 272 bytes, 2 rows per zmm (each 256-bit half one row's 8
    /// lanes); the signed quants as `q ^ 0x80 = q + 128` with `-128 sum(a)` per lane.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn q8_0(g: &Gemv) {
        const SB: usize = 272;
        let flip = _mm512_set1_epi8(i8::MIN);
        // Lanes 0..8 take row 2p's scale, lanes 8..16 row 2p + 1's.
        let sel: [__m512i; 4] = core::array::from_fn(|p| {
            let (r0, r1) = (2 * p as i32, 2 * p as i32 + 1);
            idx([
                r0, r0, r0, r0, r0, r0, r0, r0, r1, r1, r1, r1, r1, r1, r1, r1,
            ])
        });
        for grp in 0..g.groups {
            let gw = g.w.add(grp * g.nb * SB);
            let mut acc = [_mm512_setzero_ps(); 4];
            for b in 0..g.nb {
                let blk = gw.add(b * SB);
                let a = _mm512_broadcast_i64x4(_mm256_loadu_si256(g.aq.add(b * 32) as *const _));
                let corr =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(g.corr.add(8 * b) as *const _));
                let dd = scales(blk, *g.ad.add(b));
                for p in 0..4 {
                    let q = _mm512_loadu_si512(blk.add(16 + 64 * p) as *const _);
                    let s = _mm512_dpbusd_epi32(corr, _mm512_xor_si512(q, flip), a);
                    let d = _mm512_permutexvar_ps(sel[p], dd);
                    acc[p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[p]);
                }
            }
            // First tree step per row: its lanes 0..4 plus its lanes 4..8, i.e. 128-bit
            // lane 0 + lane 1 (row 2p) and lane 2 + lane 3 (row 2p + 1).
            let step1 = |a0: __m512, a1: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(a0, a1),
                    _mm512_shuffle_f32x4::<0xdd>(a0, a1),
                )
            };
            finish_tree(
                g.c.add(8 * grp),
                step1(acc[0], acc[1]),
                step1(acc[2], acc[3]),
            );
        }
    }

    /// Q4_0: superblocks of 144 bytes, 4 rows per zmm (one per 128-bit lane: `& 0x0f`
    /// gives elements 0..16, `>> 4` elements 16..32); one f32 chain per row.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn q4_0(g: &Gemv) {
        const SB: usize = 144;
        let m4 = _mm512_set1_epi8(0x0f);
        // The chain vector holds row j in lanes 4j, 4j + 1 and row j + 4 in 4j + 2, 4j + 3.
        let sel = idx([0, 0, 4, 4, 1, 1, 5, 5, 2, 2, 6, 6, 3, 3, 7, 7]);
        let out = idx([0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0]);
        for grp in 0..g.groups {
            let gw = g.w.add(grp * g.nb * SB);
            let mut chain = _mm512_setzero_ps();
            for b in 0..g.nb {
                let blk = gw.add(b * SB);
                let ap = g.aq.add(b * 32);
                let alo = _mm512_broadcast_i32x4(_mm_loadu_si128(ap as *const _));
                let ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(ap.add(16) as *const _));
                // -8 sum(a) over the block, spread over the 4 lanes a row's sum adds up.
                let corr = _mm512_broadcast_i32x4(_mm_loadu_si128(g.corr.add(8 * b) as *const _));
                let d = _mm512_permutexvar_ps(sel, scales(blk, *g.ad.add(b)));
                let dot4 = |v: __m512i| {
                    let lo = _mm512_and_si512(v, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, alo), hi, ahi)
                };
                let x = dot4(_mm512_loadu_si512(blk.add(16) as *const _)); // rows 0..4
                let y = dot4(_mm512_loadu_si512(blk.add(80) as *const _)); // rows 4..8
                                                                           // Per 128-bit lane j: [x0 + x2, x1 + x3, y0 + y2, y1 + y3], then pairs
                                                                           // summed: [t_j, t_j, t_j+4, t_j+4] (exact integers).
                let s = _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
                let t = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0xb1>(s));
                chain = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), d, chain);
            }
            let rows = _mm512_castps512_ps256(_mm512_permutexvar_ps(out, chain));
            let c = g.c.add(8 * grp);
            _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), rows));
        }
    }

    /// Q5_0: superblocks of 176 bytes, 4 rows per zmm as Q4_0; the 5th bits go in as
    /// `+ 16` under the u64 masks; 8 lanes per row: its lanes 0..4 (elements 0..16) in
    /// the `lo` accumulator, lanes 4..8 in `hi`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn q5_0(g: &Gemv) {
        const SB: usize = 176;
        let m4 = _mm512_set1_epi8(0x0f);
        let sixteen = _mm512_set1_epi8(16);
        let sel0 = idx([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        let sel1 = idx([4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7]);
        for grp in 0..g.groups {
            let gw = g.w.add(grp * g.nb * SB);
            let (mut lo0, mut hi0) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let (mut lo1, mut hi1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for b in 0..g.nb {
                let blk = gw.add(b * SB);
                let ap = g.aq.add(b * 32);
                let alo = _mm512_broadcast_i32x4(_mm_loadu_si128(ap as *const _));
                let ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(ap.add(16) as *const _));
                let clo = _mm512_broadcast_i32x4(_mm_loadu_si128(g.corr.add(8 * b) as *const _));
                let chi =
                    _mm512_broadcast_i32x4(_mm_loadu_si128(g.corr.add(8 * b + 4) as *const _));
                let dd = scales(blk, *g.ad.add(b));
                let (d0, d1) = (
                    _mm512_permutexvar_ps(sel0, dd),
                    _mm512_permutexvar_ps(sel1, dd),
                );
                let mask = |at: usize| (blk.add(at) as *const u64).read_unaligned();
                let v0 = _mm512_loadu_si512(blk.add(48) as *const _);
                let v1 = _mm512_loadu_si512(blk.add(112) as *const _);
                // `(v & 0x0f) | (0x10 where the mask bit is set)`: a zero-masked move of
                // 0x10 and one ternary logic op (0xea = A & B | C).
                let u = |v: __m512i, bits: u64| {
                    _mm512_ternarylogic_epi32::<0xea>(v, m4, _mm512_maskz_mov_epi8(bits, sixteen))
                };
                let ul0 = u(v0, mask(16));
                let uh0 = u(_mm512_srli_epi16::<4>(v0), mask(24));
                let ul1 = u(v1, mask(32));
                let uh1 = u(_mm512_srli_epi16::<4>(v1), mask(40));
                let f = |acc: __m512, d: __m512, corr: __m512i, u: __m512i, a: __m512i| {
                    _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, u, a)), acc)
                };
                lo0 = f(lo0, d0, clo, ul0, alo);
                hi0 = f(hi0, d0, chi, uh0, ahi);
                lo1 = f(lo1, d1, clo, ul1, alo);
                hi1 = f(hi1, d1, chi, uh1, ahi);
            }
            // First tree step: lane i + lane i + 4, i.e. lo + hi.
            finish_tree(
                g.c.add(8 * grp),
                _mm512_add_ps(lo0, hi0),
                _mm512_add_ps(lo1, hi1),
            );
        }
    }
}
