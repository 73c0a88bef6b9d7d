//! The transformer-layer ops (DTMM, DTMMN, DTRMSNORM, DTROPE/DTROPEH, DTSOFTMAX,
//! DTSWIGLU, DTADDR, DTRESHAPE, SGATHERV, SWINDOW, SLOAD) on both executors: they agree exactly,
//! compute the values worked out by hand, and trap (the same way) on bad operands.

mod common;
use common::*;
use vtpu_runtime::{ExecutorKind, TrapKind};

fn tile(report: &vtpu_runtime::RunReport, t: usize) -> (u32, u32, Vec<f32>) {
    let v = &report.states[0].tiles[t];
    (v.rows, v.cols, v.data.clone())
}

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn matmuls_and_reshape() {
    // a = [[1, 2, 3], [4, 5, 6]], w = [[1, 0, 1], [0, 1, 0]] (as W^T), b = [[1, 2], [3, 4], [5, 6]].
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 2x3 = 1, 2, 3, 4, 5, 6
        .page 1.1.1/1.1.1/1.1.2 f32 2x3 readonly = 1, 0, 1, 0, 1, 0
        .page 1.1.1/1.1.1/1.1.3 f32 3x2 = 1, 2, 3, 4, 5, 6
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c0
        SGATHER t1, c1
        SGATHER t2, c2
        DTMM t3, t0, t1
        DTMMN t4, t0, t2
        DTRESHAPE t5, t4, 1
        DTRESHAPE t6, t1, 6
        DTRESHAPE t4, t4, 4
    ";
    let (r, _) = run_both(src, 1);
    assert_eq!(tile(&r, 3), (2, 2, vec![4.0, 2.0, 10.0, 5.0]));
    assert_eq!(tile(&r, 5), (4, 1, vec![22.0, 28.0, 49.0, 64.0]));
    assert_eq!(tile(&r, 6), (1, 6, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]));
    assert_eq!(tile(&r, 4), (1, 4, vec![22.0, 28.0, 49.0, 64.0]));
    assert_eq!(r.counters[0].flops, 2 * 2 * 2 * 3 + 2 * 2 * 2 * 3);
}

#[test]
fn norm_swiglu_bias_and_rope() {
    // x = [3, 4 | 1, 1]: rmsnorm in groups of 2 with weight [1, 2] and eps 0.
    // rope table row p: cos | sin with Hd = 2 (one pair): p0 = (1 | 0), p1 = (0 | 1).
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x4 = 3, 4, 1, 1
        .page 1.1.1/1.1.1/1.1.2 f32 1x2 readonly = 1, 2
        .page 1.1.1/1.1.1/1.1.3 f32 2x2 readonly = 1, 0, 0, 1
        .page 1.1.1/1.1.1/1.1.4 f32 2x2 = 1, 2, 3, 4
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SCLI c3, 1.1.1/1.1.1/1.1.4
        SGATHER t0, c0
        SGATHER t1, c1
        SGATHER t2, c2
        SGATHER t3, c3
        DTRMSNORM t4, t0, t1, 0
        DTADDR t5, t3, t1
        DTSWIGLU t6, t3, t3
        DLI r1, 0
        DTROPE t7, t3, t2, r1
        DTROPEH t8, t3, t2, r1
    ";
    let (r, _) = run_both(src, 1);
    let s = 1.0 / (12.5f32).sqrt();
    close(&tile(&r, 4).2, &[3.0 * s, 8.0 * s, 1.0, 2.0], 1e-6);
    assert_eq!(tile(&r, 5).2, vec![2.0, 4.0, 4.0, 6.0]);
    let silu = |x: f32| x / (1.0 + (-x).exp());
    close(
        &tile(&r, 6).2,
        &[silu(1.0), 2.0 * silu(2.0), 3.0 * silu(3.0), 4.0 * silu(4.0)],
        1e-5,
    );
    // Row 0 at position 0 is unchanged; row 1 at position 1 turns by 90 degrees:
    // (3, 4) -> (-4, 3). With Hd = 2 both layouts pair the same two elements.
    assert_eq!(tile(&r, 7).2, vec![1.0, 2.0, -4.0, 3.0]);
    assert_eq!(tile(&r, 8).2, vec![1.0, 2.0, -4.0, 3.0]);
}

#[test]
fn softmax_is_causal_per_row_group() {
    // 4 rows x 3 cols of zeros, 2 rows per position, last visible column of row 0 = 0:
    // rows 0, 1 see column 0; rows 2, 3 see columns 0..=1.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 4x3
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SGATHER t0, c0
        DLI r1, 0
        DLI r2, 2
        DTSOFTMAX t1, t0, r1, r2, 0.5
        DLI r1, 5
        DTSOFTMAX t2, t0, r1, r2, 1
        DLI r1, -2
        DTSOFTMAX t3, t0, r1, r2, 1
    ";
    let (r, _) = run_both(src, 1);
    assert_eq!(
        tile(&r, 1).2,
        vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5, 0.5, 0.0]
    );
    let third = 1.0 / 3.0;
    close(&tile(&r, 2).2, &[third; 12], 1e-7);
    // Nothing visible: a row of zeros (never NaN).
    assert_eq!(tile(&r, 3).2, vec![0.0; 12]);
}

#[test]
fn gatherv_and_sload_read_pages_at_register_offsets() {
    let src = "
        .page 1.1.1/1.1.1/1.1.1 i32 1x3
        .page 1.1.1/1.1.1/1.1.2 f32 3x2 = 1, 2, 3, 4, 5, 6
        .page 1.1.1/1.1.1/1.1.3 f32 3x2 readonly = 1, 2, 3, 4, 5, 6
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        DLI r1, 2
        SLOAD r2, c0, r1
        DLI r3, 2
        SGATHERV t0, c1, r1, r3, 2
        SGATHERV t1, c2, r1, r3, 2
    ";
    let (r, _) = run_both(src, 1);
    assert_eq!(r.states[0].scalars[2], 0);
    assert_eq!(tile(&r, 0), (2, 2, vec![3.0, 4.0, 5.0, 6.0]));
    assert_eq!(tile(&r, 1), (2, 2, vec![3.0, 4.0, 5.0, 6.0]));
    // The writable page is copied, the read-only one viewed.
    assert_eq!(r.counters[0].bytes_copied, 16);
    assert_eq!(r.counters[0].bytes_gathered, 32);
}

/// Both executors trap at the same pc with the same kind.
fn traps(body: &str) -> TrapKind {
    let src = format!(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 2x4 = 1, 2, 3, 4, 5, 6, 7, 8
        .page 1.1.1/1.1.1/1.1.2 f32 2x2 readonly = 1, 0, 0, 1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        SGATHER t1, c1
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
fn bad_operands_trap_on_both_executors() {
    let shape = |k: TrapKind| matches!(k, TrapKind::Shape(_));
    assert!(shape(traps("DTMM t2, t0, t1"))); // k = 4 vs 2
    assert!(shape(traps("DTMMN t2, t0, t1"))); // 4 cols vs 2 rows
    assert!(shape(traps("DTRESHAPE t2, t0, 3")));
    assert!(shape(traps("DTRESHAPE t2, t0, 0")));
    assert!(shape(traps("DTADDR t2, t1, t0"))); // 8 elements for rows of 2
    assert!(shape(traps("DTSWIGLU t2, t0, t1")));
    // Groups of 8 elements over a 4-element tile.
    assert!(shape(traps("DTRESHAPE t3, t0, 8\nDTRMSNORM t2, t1, t3, 0")));
    // Rope position past the table (2 rows), negative position, odd Hd.
    assert!(shape(traps("DLI r1, 1\nDTROPE t2, t0, t1, r1")));
    assert!(shape(traps("DLI r1, -1\nDTROPEH t2, t0, t1, r1")));
    assert!(shape(traps("DTRESHAPE t3, t0, 1\nDTROPE t2, t0, t3, r0")));
    // Softmax with fewer than 1 row per position.
    assert!(shape(traps("DTSOFTMAX t2, t0, r0, r0, 1")));
    // SGATHERV past the page, zero rows; SLOAD of an f32 page.
    assert!(matches!(
        traps("DLI r1, 3\nSGATHERV t2, c0, r0, r1, 4"),
        TrapKind::OutOfBounds { .. }
    ));
    assert!(shape(traps("SGATHERV t2, c0, r0, r0, 4")));
    assert!(matches!(traps("SLOAD r1, c0, r0"), TrapKind::BadDType(_)));
    assert!(matches!(traps("DTMM t2, t0, t5"), TrapKind::EmptyTile(5)));
}

#[test]
fn simd_levels_agree_with_scalar_within_rounding() {
    // The same program at the best kernel level and at the scalar level.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 2x4 = 0.5, -1, 2, 0.25, 1, 3, -2, 0.75
        .page 1.1.1/1.1.1/1.1.2 bf16 3x4 readonly
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        SGATHER t1, c1
        DTMM t2, t0, t1
        DTSOFTMAX t3, t0, r0, r0, 1
    ";
    let src = src.replace(
        "DTSOFTMAX t3, t0, r0, r0, 1",
        "DLI r1, 1\nDTSOFTMAX t3, t0, r1, r1, 1",
    );
    let (best, _) = run_at(&src, 1, ExecutorKind::Fast, None);
    let (scalar, _) = run_on(&src, 1, ExecutorKind::Fast);
    let (best, scalar) = (best.unwrap(), scalar.unwrap());
    assert_eq!(tile(&best, 2).2, vec![0.0; 6]); // zero bf16 weights
    close(&tile(&best, 3).2, &tile(&scalar, 3).2, 1e-6);
}

#[test]
fn windows_read_the_page_when_used_without_copying() {
    // A 3x2 writable page; a window onto its rows 1..3. DTMM/DTMMN read through it; a
    // scatter between SWINDOW and the use is seen; a scatter in the same word as the
    // use is not (D reads before S writes), on both executors.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 3x2 = 1, 2, 3, 4, 5, 6
        .page 1.1.1/1.1.1/1.1.2 f32 1x2 = 1, 1
        .page 1.1.1/1.1.1/1.1.3 f32 1x2 = 10, 20
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c1
        SGATHER t1, c2
        DLI r1, 2
        DLI r2, 2
        SWINDOW t2, c0, r1, r2, 2
        DTMM t3, t0, t2
        DTMMN t4, t0, t2
        SSCATTR t1, c0, r1
        DTMM t5, t0, t2
        DTMM t6, t0, t2 | SSCATTR t0, c0, r1
        DTMM t7, t0, t2
        DMOV t8, t2
    ";
    let (r, _) = run_both(src, 1);
    assert_eq!(tile(&r, 3).2, vec![7.0, 11.0]); // [1,1] . rows [3,4] and [5,6]
    assert_eq!(tile(&r, 4).2, vec![8.0, 10.0]); // [1,1] x [[3,4],[5,6]]
    assert_eq!(tile(&r, 5).2, vec![30.0, 11.0]); // row 1 is now [10, 20]
    assert_eq!(tile(&r, 6).2, vec![30.0, 11.0]); // same word: the old contents
    assert_eq!(tile(&r, 7).2, vec![2.0, 11.0]); // row 1 is now [1, 1]
                                                // The final state shows what the windows see now.
    assert_eq!(tile(&r, 8), (2, 2, vec![1.0, 1.0, 5.0, 6.0]));
    assert_eq!(
        r.counters[0].bytes_copied,
        8 + 8 + 8 + 8,
        "gathers and scatters only"
    );
}

#[test]
fn windows_are_refused_by_other_ops_and_bad_windows_trap() {
    let bad = |k: TrapKind| matches!(k, TrapKind::BadDType(_));
    assert!(bad(traps(
        "DLI r1, 2\nSWINDOW t2, c0, r0, r1, 4\nDTADD t3, t2, t2"
    )));
    assert!(bad(traps(
        "DLI r1, 1\nSWINDOW t2, c0, r0, r1, 4\nDTMM t3, t2, t0"
    )));
    assert!(bad(traps(
        "DLI r1, 1\nSWINDOW t2, c0, r0, r1, 4\nCREDUCE t2, sum, all"
    )));
    assert!(matches!(
        traps("DLI r1, 3\nSWINDOW t2, c0, r0, r1, 4"),
        TrapKind::OutOfBounds { .. }
    ));
    assert!(matches!(
        traps("SWINDOW t2, c0, r0, r0, 4"),
        TrapKind::Shape(_)
    ));
}
