//! Programs run on both executors: results, word semantics, collectives, counters.

mod common;
use common::*;
use vtpu_runtime::ExecutorKind;

const MICRO: &str = include_str!("../../../examples/vasm/microvtpu.vasm");
const LOOP_SUM: &str = include_str!("../../../examples/vasm/loop_sum.vasm");

#[test]
fn microvtpu_computes_42_and_47_on_both_executors() {
    let (report, space) = run_both(MICRO, 2);
    assert_eq!(read_f32(&space, "1.1.1/1.1.2/1.1.1"), vec![42.0]);
    assert_eq!(read_f32(&space, "1.1.1/1.1.2/1.1.2"), vec![47.0]);
    for c in &report.counters {
        assert!(c.siws > 0);
        assert!(c.ops_per_siw() >= 1.0 && c.ops_per_siw() <= 3.0);
        assert!(c.ppt_lookups > 0);
    }
    assert_eq!(report.counters[0].msgs_sent, 1);
}

#[test]
fn loop_sum_reduces_across_sentrons() {
    for n in [1usize, 2, 3] {
        let (_, space) = run_both(LOOP_SUM, n);
        let total = read_f32(&space, "1.1.1/1.1.1/1.2.1");
        assert_eq!(total, vec![500500.0 * n as f32], "n = {n}");
    }
}

#[test]
fn slots_read_registers_as_they_were_before_the_word() {
    // D overwrites t0 while S scatters it: S must store the old t0 (7), not 9.
    // D increments r1 while C compares it: the branch sees the old value.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x1 = 7
        .page 1.1.1/1.1.1/1.1.2 f32 1x1
        .page 1.1.1/1.1.1/1.1.3 f32 1x1 = 2
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c0
        SGATHER t1, c2
        DTADD t0, t0, t1 | SSCATTR t0, c1, r0
        DLI r2, 1
        DADDI r1, r1, 1 | CBEQ r1, r2, wrong
        DLI r5, 100 | CHALT
    wrong:
        DLI r5, 200 | CHALT
    ";
    let (report, space) = run_both(src, 1);
    assert_eq!(read_f32(&space, "1.1.1/1.1.1/1.1.2"), vec![7.0]);
    assert_eq!(report.states[0].tiles[0].data, vec![9.0]);
    assert_eq!(report.states[0].scalars[1], 1);
    assert_eq!(report.states[0].scalars[5], 100, "branch must see r1 = 0");
}

#[test]
fn gather_and_compute_in_one_word_use_the_old_tile() {
    // D reads t0 while S overwrites it with a new gather.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x2 = 1, 2
        .page 1.1.1/1.1.1/1.1.2 f32 1x2 = 10, 20
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        DMOV t1, t0 | SGATHER t0, c1
        DTADD t2, t0, t1
    ";
    let (report, _) = run_both(src, 1);
    assert_eq!(report.states[0].tiles[1].data, vec![1.0, 2.0]);
    assert_eq!(report.states[0].tiles[2].data, vec![11.0, 22.0]);
}

#[test]
fn tile_math_matches_between_executors() {
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 2x3 = 1, -2, 3, 0.5, 4, -1
        .page 1.1.1/1.1.1/1.1.2 f32 2x3 = 0.25, 2, -3, 1, 1, 2
        .page 1.1.1/1.1.1/1.1.3 f32 4x3 readonly = 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c0
        SGATHER t1, c1
        SGATHER t2, c2
        DTSUB t3, t0, t1
        DTMUL t4, t0, t1
        DTMAX t5, t0, t1
        DTZERO t6, 2x3
        DTFMA t6, t0, t1
        DTSCALE t7, t0, 0.5
        DTRSUM t8, t0
        DTRMAX t9, t0
        DTRSSQ t10, t0
        DTEXP t11, t0
        DTSILU t12, t0
        DTRSQRT t13, t1
        DTZERO t14, 2x4
        DTMATMUL t14, t0, t2
    ";
    let (report, _) = run_both(src, 1);
    let t = &report.states[0].tiles;
    assert_eq!(t[3].data, vec![0.75, -4.0, 6.0, -0.5, 3.0, -3.0]);
    assert_eq!(t[8].data, vec![2.0, 3.5]);
    assert_eq!(t[9].data, vec![3.0, 4.0]);
    assert_eq!(t[14].data, vec![1.0, -2.0, 3.0, 2.0, 0.5, 4.0, -1.0, 3.5]);
    assert_eq!((t[14].rows, t[14].cols), (2, 4));
    assert!((t[11].data[0] - std::f32::consts::E).abs() < 1e-6);
}

#[test]
fn messages_and_broadcast_between_three_sentrons() {
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x2 = 3, 4
        .page 1.1.1/1.1.1/1.1.2 f32 3x2
    .sentron 0
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SGATHER t0, c0
        DLI r1, 99
        CSEND @1, r1
        CCAST t0, @0, all
        CSEND @2, t0
        CBAR all
    .sentron 1
        CRECV r3, @0
        DTZERO t0, 1x1
        CCAST t0, @0, all
        CBAR all
    .sentron 2
        DTZERO t0, 1x1
        CCAST t0, @0, all
        CRECV t1, @0
        DTADD t2, t0, t1
        CBAR all
    ";
    let (report, _) = run_both(src, 3);
    assert_eq!(report.states[1].scalars[3], 99);
    assert_eq!(report.states[1].tiles[0].data, vec![3.0, 4.0]);
    assert_eq!(report.states[2].tiles[2].data, vec![6.0, 8.0]);
}

#[test]
fn reduce_max_and_subgroups() {
    let src = "
        DSID r1
        DTZERO t0, 1x1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        CREDUCE t0, max, all
        CBNE r1, r0, done
        DLI r2, 1
    done:
        CHALT
    ";
    let (report, _) = run_both(src, 2);
    assert_eq!(report.states[0].scalars[2], 1);
}

/// CREDUCE cat: the members' tiles side by side, columns in sentron order, the same on
/// every member and on both executors (sentron 1 enters last, so the combining member
/// is not the first contributor).
#[test]
fn reduce_cat_is_an_all_gather_in_sentron_order() {
    let src = "
    .sentron 0
        DLI r1, 1
        DTSPLAT t0, r1, 2x1
        CREDUCE t0, cat, all
    .sentron 1
        DLI r1, 2
        DLI r2, 50
    spin:
        DADDI r2, r2, -1 | CBNE r2, r0, spin
        DTSPLAT t0, r1, 2x2
        CREDUCE t0, cat, all
    .sentron 2
        DLI r1, 3
        DTSPLAT t0, r1, 2x3
        CREDUCE t0, cat, all
    ";
    let (report, _) = run_both(src, 3);
    let want = vec![1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0];
    for s in &report.states {
        let t = &s.tiles[0];
        assert_eq!((t.rows, t.cols), (2, 6));
        assert_eq!(t.data, want);
    }
}

/// Tiles of 16K elements and more go through the fast executor's shared-result path
/// (the contribution moved in, the result shared by the members, not copied); every op
/// that reads, copies, reshapes or contributes the shared result again must see the
/// same elements as the reference executor.
#[test]
fn large_all_gather_results_are_shared_and_read_like_any_tile() {
    // The same stream on both sentrons, each splatting its id + 1.
    let src: String = (0..2)
        .map(|id| {
            format!(
                "
    .sentron {id}
        DLI r1, {}
        DTSPLAT t0, r1, 64x256
        CREDUCE t0, cat, all
        DMOV t1, t0
        DTADD t2, t0, t1
        DTRESHAPE t3, t0, 256
        CREDUCE t0, sum, all
        DTRESHAPE t0, t0, 128
    ",
                id + 1
            )
        })
        .collect();
    let (report, _) = run_both(&src, 2);
    let row: Vec<f32> = [1.0f32; 256]
        .iter()
        .chain(&[2.0f32; 256])
        .copied()
        .collect();
    let gathered: Vec<f32> = row.iter().cycle().take(64 * 512).copied().collect();
    let doubled: Vec<f32> = gathered.iter().map(|x| 2.0 * x).collect();
    for s in &report.states {
        assert_eq!((s.tiles[1].rows, s.tiles[1].cols), (64, 512));
        assert_eq!(s.tiles[1].data, gathered);
        assert_eq!(s.tiles[2].data, doubled);
        assert_eq!((s.tiles[3].rows, s.tiles[3].cols), (128, 256));
        assert_eq!(s.tiles[3].data, gathered);
        assert_eq!((s.tiles[0].rows, s.tiles[0].cols), (256, 128));
        assert_eq!(s.tiles[0].data, doubled);
    }
}

#[test]
fn alloc_free_and_coordinate_arithmetic() {
    let src = "
        SCLI c0, 3.1.1/1.1.1/1.1.1
        DLI r1, 4
        SINDEX c1, c0, scroll, r1
        SALLOC c1, f32, scratch, 2x2
        DTZERO t0, 1x2
        DLI r2, 2
        SSCATTR t0, c1, r2
        SINDEXI c2, c1, shelf, 2
        SGATHERS t1, c1, r2, 1x2
        SFREE c1
    ";
    let (report, space) = run_both(src, 1);
    assert_eq!(report.states[0].coords[1].to_string(), "3.1.1/1.1.1/1.1.5");
    assert_eq!(report.states[0].coords[2].to_string(), "3.3.1/1.1.1/1.1.5");
    assert!(space.is_empty());
}

#[test]
fn loops_run_long_and_count_every_word() {
    let src = "
        DLI r1, 1000
    top:
        DADDI r2, r2, 3 | CLOOP r1, top
    ";
    let (report, _) = run_both(src, 1);
    let c = &report.counters[0];
    assert_eq!(report.states[0].scalars[2], 3000);
    assert_eq!(c.siws, 1001);
    assert_eq!(c.ops, [1001, 0, 1000]);
    assert_eq!(c.nops, [0, 1001, 1]);
}

#[test]
fn fast_executor_with_simd_kernels_agrees_within_tolerance() {
    // SIMD kernels sum in a different order: compare against the reference with the
    // kernels' own derived bound for a dot product of length k.
    let k = 300usize;
    let vals: Vec<String> = (0..k)
        .map(|i| format!("{}", ((i * 37 % 101) as f32 - 50.0) / 25.0))
        .collect();
    let src = format!(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 1x{k} = {v}
        .page 1.1.1/1.1.1/1.1.2 f32 1x{k} readonly = {v}
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        SGATHER t1, c1
        DTZERO t2, 1x1
        DTMATMUL t2, t0, t1
        ",
        v = vals.join(", ")
    );
    let (fast, _) = run_at(&src, 1, ExecutorKind::Fast, None);
    let (refr, _) = run_at(&src, 1, ExecutorKind::Reference, None);
    let (f, r) = (
        fast.unwrap().states[0].tiles[2].data[0],
        refr.unwrap().states[0].tiles[2].data[0],
    );
    let x: Vec<f32> = vals.iter().map(|s| s.parse().unwrap()).collect();
    let abs_sum: f64 = x.iter().map(|v| (v * v) as f64).sum();
    let bound = vtpu_kernels::tolerance::dot_bound(k, abs_sum) as f32;
    assert!(
        (f - r).abs() <= bound,
        "fast {f} vs reference {r}, bound {bound}"
    );
}

#[test]
fn barriers_really_synchronise_page_traffic() {
    // 300 rounds: sentron 0 writes i to a page, both meet at a barrier, sentron 1 reads
    // it and adds it up, both meet again before the next write. Without a real barrier
    // sentron 1 would see stale or future values.
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x1
        .page 1.1.1/1.1.1/1.1.2 f32 1x1
    .sentron 0
        SCLI c0, 1.1.1/1.1.1/1.1.1
        DLI r1, 300
        DLI r2, 0
    top:
        DADDI r2, r2, 1
        DTSPLAT t0, r2, 1x1
        SSCATTR t0, c0, r0
        CBAR all
        CBAR all
        CLOOP r1, top
    .sentron 1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        DLI r1, 300
        DTZERO t1, 1x1
    top:
        CBAR all
        SGATHER t0, c0
        DTADD t1, t1, t0
        CBAR all
        CLOOP r1, top
        SSCATTR t1, c1, r0
    ";
    for _ in 0..5 {
        let (r, space) = run_on(src, 2, ExecutorKind::Fast);
        r.expect("runs");
        assert_eq!(read_f32(&space, "1.1.1/1.1.1/1.1.2"), vec![45150.0]);
    }
    let (report, space) = run_both(src, 2);
    assert_eq!(read_f32(&space, "1.1.1/1.1.1/1.1.2"), vec![45150.0]);
    assert!(report.counters.iter().all(|c| c.ops[2] >= 600));
}
