//! f16 KV caches (`--kv-type f16`): SSCATTR of f32 tiles into f16 pages rounds to nearest
//! even, SWINDOW opens f16 pages, DTMM reads an f16 window as f16 weights and DTMMN as an
//! f16 `B`. Both executors agree exactly (the fast one at the scalar kernel level), the
//! SIMD levels stay within the derived dot-product bound, and wrong dtypes trap the same
//! way on both.

mod common;
use common::*;
use half::f16;
use vtpu_kernels::tolerance::dot_bound;
use vtpu_runtime::{ExecutorKind, RunReport, TrapKind};

fn tile(report: &RunReport, t: usize) -> (u32, u32, Vec<f32>) {
    let v = &report.states[0].tiles[t];
    (v.rows, v.cols, v.data.clone())
}

/// The raw f16 elements of the page at `coord`.
fn f16_page(space: &vtpu_phext::PhextSpace, coord: &str) -> Vec<f16> {
    let c = vtpu_phext::Coord::parse(coord).expect("coord");
    let p = space.get(c).expect("page");
    assert_eq!(p.dtype(), vtpu_phext::DType::F16);
    p.read(|b| {
        b.chunks_exact(2)
            .map(|x| f16::from_le_bytes([x[0], x[1]]))
            .collect()
    })
}

/// `v` as `.page` initial values (Display of f32 round-trips exactly).
fn values(v: &[f32]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn scatter_into_f16_rounds_to_nearest_even() {
    // 1 + 2^-11 and 1 + 3 * 2^-11 are exact ties between neighbouring f16 values (ulp
    // 2^-10 at 1): they go to the even neighbour, 1 and 1 + 2^-9. 65520 is the tie
    // between the largest f16 (65504) and the next power of two: +inf. 2^-25 is the tie
    // between 0 and the smallest f16 subnormal (2^-24): +0. 0.1 is no tie.
    let v: [f32; 8] = [
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        -(1.0 + 2f32.powi(-11)),
        65520.0,
        2f32.powi(-25),
        3.0 * 2f32.powi(-25),
        0.1,
        -2.5,
    ];
    let src = format!(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 2x4 = {}
        .page 1.1.1/1.1.1/1.1.2 f16 3x4
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        DLI r1, 4
        SSCATTR t0, c1, r1
        ",
        values(&v)
    );
    let (r, space) = run_both(&src, 1);
    let got = f16_page(&space, "1.1.1/1.1.1/1.1.2");
    let want: Vec<f16> = [0.0f32; 4]
        .iter()
        .copied()
        .map(f16::from_f32)
        .chain([
            f16::ONE,
            f16::from_f32(1.0 + 2f32.powi(-9)),
            -f16::ONE,
            f16::INFINITY,
            f16::ZERO,
            f16::from_bits(2),      // 3 * 2^-25 rounds up to 2 * 2^-24
            f16::from_bits(0x2e66), // the f16 nearest 0.1
            f16::from_f32(-2.5),
        ])
        .collect();
    let bits = |v: &[f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    // Two bytes per element reach the page.
    assert_eq!(r.counters[0].bytes_scattered, 16);
}

/// A decode-shaped attention over f16 caches: keys and values scattered in two chunks
/// (prefill then more positions), windows over the first `s` positions, scores, causal
/// softmax, `P V`.
fn attention_src(
    s: usize,
    hd: usize,
    g: usize,
    seed: u64,
) -> (String, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = mixed_rng(seed);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng()).collect() };
    let (keys, vals, q) = (rand(s * hd), rand(s * hd), rand(g * hd));
    let first = s * 3 / 4;
    let src = format!(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 {s}x{hd} = {}
        .page 1.1.1/1.1.1/1.1.2 f32 {s}x{hd} = {}
        .page 1.1.1/1.1.1/1.1.3 f32 {g}x{hd} = {}
        .page 1.1.1/1.1.1/1.1.4 f16 {cap}x{hd}
        .page 1.1.1/1.1.1/1.1.5 f16 {cap}x{hd}
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SCLI c3, 1.1.1/1.1.1/1.1.4
        SCLI c4, 1.1.1/1.1.1/1.1.5
        DLI r0, 0
        DLI r1, {first}
        SGATHERV t0, c0, r0, r1, {hd}
        SGATHERV t1, c1, r0, r1, {hd}
        SSCATTR t0, c3, r0
        SSCATTR t1, c4, r0
        DLI r2, {off}
        DLI r3, {rest}
        SGATHERV t0, c0, r2, r3, {hd}
        SGATHERV t1, c1, r2, r3, {hd}
        SSCATTR t0, c3, r2
        SSCATTR t1, c4, r2
        DLI r4, {s}
        SWINDOW t2, c3, r0, r4, {hd}
        SWINDOW t3, c4, r0, r4, {hd}
        SGATHER t4, c2
        DTMM t5, t4, t2
        DLI r5, {last}
        DLI r6, {g}
        DTSOFTMAX t6, t5, r5, r6, 0.25
        DTMMN t7, t6, t3
        ",
        values(&keys),
        values(&vals),
        values(&q),
        cap = s + 5,
        off = first * hd,
        rest = s - first,
        last = s - 1,
    );
    (src, keys, vals, q)
}

/// Mixed magnitudes in (-4, 4), seeded (splitmix64).
fn mixed_rng(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        let e = (z & 7) as i32 - 5;
        ((u * 2.0 - 1.0) * 2f64.powi(e)) as f32
    }
}

/// `|got - sum_p x_p y_p|` within the f32 dot-product bound for every element of an
/// `m x n` result with `k`-term sums (`y` as `n x k` when `bt`, else `k x n`).
fn check_dot(
    what: &str,
    got: &[f32],
    x: &[f32],
    y: &[f32],
    (m, n, k): (usize, usize, usize),
    bt: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let terms = (0..k).map(|p| {
                let yv = if bt { y[j * k + p] } else { y[p * n + j] };
                x[i * k + p] as f64 * yv as f64
            });
            let (exact, abs) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
            let err = (got[i * n + j] as f64 - exact).abs();
            assert!(
                err <= dot_bound(k, abs),
                "{what} [{i},{j}]: {} vs {exact} (err {err:e}, bound {:e})",
                got[i * n + j],
                dot_bound(k, abs)
            );
        }
    }
}

#[test]
fn executors_agree_exactly_on_f16_caches_and_simd_is_within_bounds() {
    for (s, hd, g, seed) in [(37, 24, 3, 1), (70, 64, 5, 2), (9, 17, 1, 3)] {
        let (src, keys, vals, q) = attention_src(s, hd, g, seed);
        // Exact agreement of registers, pages and counters (scalar kernels).
        let (r, space) = run_both(&src, 1);
        let k16 = f16_page(&space, "1.1.1/1.1.1/1.1.4");
        let v16 = f16_page(&space, "1.1.1/1.1.1/1.1.5");
        let round = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        assert_eq!(&k16[..s * hd], &round(&keys)[..]);
        assert_eq!(&v16[..s * hd], &round(&vals)[..]);
        assert!(
            k16[s * hd..].iter().all(|x| x.to_bits() == 0),
            "rows past S untouched"
        );
        let widen = |v: &[f16]| v[..s * hd].iter().map(|x| x.to_f32()).collect::<Vec<_>>();
        let (kw, vw) = (widen(&k16), widen(&v16));
        // The windows show the f16 values, widened; the scores and P V are the products
        // of the rounded cache (within the f32 dot bound of the exact sums).
        assert_eq!(tile(&r, 2), (s as u32, hd as u32, kw.clone()));
        let (_, _, scores) = tile(&r, 5);
        check_dot("scores", &scores, &q, &kw, (g, s, hd), true);
        let (_, _, probs) = tile(&r, 6);
        let (rows, cols, out) = tile(&r, 7);
        assert_eq!((rows, cols), (g as u32, hd as u32));
        check_dot("P V", &out, &probs, &vw, (g, hd, s), false);
        // Counters: f16 bytes scattered and opened.
        let c = &r.counters[0];
        assert_eq!(
            c.bytes_scattered,
            2 * 2 * (s * hd) as u64,
            "keys and values, 2 bytes each"
        );

        // The best SIMD level: the same products within the bound.
        let (best, _) = run_at(&src, 1, ExecutorKind::Fast, None);
        let best = best.expect("fast executor at the best level");
        let (_, _, bscores) = tile(&best, 5);
        check_dot("simd scores", &bscores, &q, &kw, (g, s, hd), true);
        let (_, _, bprobs) = tile(&best, 6);
        let (_, _, bout) = tile(&best, 7);
        check_dot("simd P V", &bout, &bprobs, &vw, (g, hd, s), false);
    }
}

#[test]
fn f16_windows_reshape_and_move_on_both_executors() {
    // DMOV shares the window; DTRESHAPE re-reads it under another shape; both still feed
    // DTMM / DTMMN.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x4 = 1, 2, 3, 4
        .page 1.1.1/1.1.1/1.1.2 f16 2x2
        .page 1.1.1/1.1.1/1.1.3 f32 1x2 = 1, 1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c0
        SGATHER t1, c2
        SSCATTR t0, c1, r0
        DLI r1, 2
        SWINDOW t2, c1, r0, r1, 2
        DMOV t3, t2
        DTRESHAPE t4, t2, 4
        DTMM t5, t1, t3
        DTMMN t6, t1, t3
        DTRESHAPE t7, t0, 4
        DTMM t8, t7, t4
    ";
    let (r, _) = run_both(src, 1);
    assert_eq!(tile(&r, 5).2, vec![3.0, 7.0]); // rows [1,2], [3,4] summed
    assert_eq!(tile(&r, 6).2, vec![4.0, 6.0]); // columns summed
    assert_eq!(tile(&r, 4), (1, 4, vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(tile(&r, 8).2, vec![30.0]);
    assert_eq!(r.states[0].tiles[3].dtype, vtpu_phext::DType::F16);
}

/// Both executors trap at the same pc with the same kind.
fn traps(body: &str) -> TrapKind {
    let src = format!(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 2x4 = 1, 2, 3, 4, 5, 6, 7, 8
        .page 1.1.1/1.1.1/1.1.2 f16 4x4
        .page 1.1.1/1.1.1/1.1.3 bf16 4x4
        .page 1.1.1/1.1.1/1.1.4 i32 4x4
        .page 1.1.1/1.1.1/1.1.5 f16 4x4 readonly
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SCLI c3, 1.1.1/1.1.1/1.1.4
        SCLI c4, 1.1.1/1.1.1/1.1.5
        SGATHER t0, c0
        DLI r1, 2
        {body}
    "
    );
    let (a, b) = fail_both(&src, 1);
    let (ta, tb) = (a.as_trap().cloned(), b.as_trap().cloned());
    let (ta, tb) = (ta.expect("fast traps"), tb.expect("reference traps"));
    assert_eq!((ta.pc, &ta.kind), (tb.pc, &tb.kind), "{body}");
    ta.kind
}

#[test]
fn wrong_dtypes_and_shapes_trap_on_both_executors() {
    let bad = |k: TrapKind| matches!(k, TrapKind::BadDType(_));
    // Scatter only into f32 or f16 pages, never read-only ones.
    assert!(bad(traps("SSCATTR t0, c2, r0")));
    assert!(bad(traps("SSCATTR t0, c3, r0")));
    assert!(matches!(traps("SSCATTR t0, c4, r0"), TrapKind::ReadOnly));
    // Past the end of the f16 page (16 elements: 8 from 9 do not fit).
    assert!(matches!(
        traps("DLI r3, 9\nSSCATTR t0, c1, r3"),
        TrapKind::OutOfBounds { .. }
    ));
    // Windows only onto f32 or f16 pages.
    assert!(bad(traps("SWINDOW t2, c2, r0, r1, 4")));
    assert!(bad(traps("SWINDOW t2, c3, r0, r1, 4")));
    assert!(matches!(
        traps("DLI r3, 5\nSWINDOW t2, c1, r0, r3, 4"),
        TrapKind::OutOfBounds { .. }
    ));
    // An f16 window is refused by every op but the second operand of DTMM / DTMMN.
    assert!(bad(traps("SWINDOW t2, c1, r0, r1, 4\nDTADD t3, t2, t2")));
    assert!(bad(traps("SWINDOW t2, c1, r0, r1, 4\nDTMM t3, t2, t0")));
    assert!(bad(traps("SWINDOW t2, c1, r0, r1, 4\nDTMMN t3, t2, t0")));
    assert!(bad(traps("SWINDOW t2, c1, r0, r1, 4\nSSCATTR t2, c1, r0")));
    assert!(bad(traps(
        "SWINDOW t2, c1, r0, r1, 4\nDTSOFTMAX t3, t2, r1, r1, 1"
    )));
    // Shapes still checked: DTMM needs 4 columns (has 2), DTMMN needs 4 rows (has 2).
    let shape = |k: TrapKind| matches!(k, TrapKind::Shape(_));
    assert!(shape(traps("SWINDOW t2, c1, r0, r1, 2\nDTMM t3, t0, t2")));
    assert!(shape(traps("SWINDOW t2, c1, r0, r1, 4\nDTMMN t3, t0, t2")));
    // A writable f16 page is not gathered (copied) into a tile: windows only.
    assert!(bad(traps("SGATHERV t2, c1, r0, r1, 4")));
}
