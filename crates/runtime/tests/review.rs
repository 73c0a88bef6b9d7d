//! Concurrency and corner-case review of the runtime: the C-pipe fabric under stress
//! (generations, re-entry, mismatches, deadlock exactness), executor agreement on
//! unusual but valid programs, and traps that must stop everyone without hanging.

mod common;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vtpu_runtime::fabric::{
    CollError, CollKind, CollTile, LocalFabric, Message, Transport, WaitSite,
};
use vtpu_runtime::{ExecutorKind, MachineError, RunConfig, TrapKind};

fn trap_of(e: &MachineError) -> &vtpu_runtime::Trap {
    e.as_trap()
        .unwrap_or_else(|| panic!("expected a trap, got: {e}"))
}

fn site() -> WaitSite {
    WaitSite {
        pc: 0,
        op: vtpu_isa::Op::nop(vtpu_isa::Pipe::C),
    }
}

fn tile(v: f32) -> CollTile {
    CollTile {
        rows: 1,
        cols: 2,
        data: vec![v, -v],
    }
}

// ------------------------------------------------------------------ the fabric itself

/// Thousands of back-to-back collectives of changing kinds on one group, with members
/// re-entering while slower members have not yet woken from the previous generation:
/// every member must get its own generation's result, and no kind change may be taken
/// for a mismatch.
#[test]
fn fabric_generations_never_mix_results() {
    const ROUNDS: u32 = 3000;
    for n in [2usize, 3, 4] {
        let fabric = LocalFabric::new(n);
        let all = (1u64 << n) - 1;
        std::thread::scope(|sc| {
            for me in 0..n as u32 {
                let fabric = &fabric;
                sc.spawn(move || {
                    for round in 0..ROUNDS {
                        let v = (round * 16 + me) as f32;
                        match round % 4 {
                            0 => {
                                let r = fabric
                                    .collective(
                                        me,
                                        all,
                                        CollKind::Reduce(0),
                                        Some(tile(v)),
                                        &site(),
                                    )
                                    .expect("reduce")
                                    .expect("a tile");
                                // sum over j of round*16 + j
                                let want =
                                    (n as u32 * round * 16) as f32 + (n * (n - 1) / 2) as f32;
                                assert_eq!(r.data, vec![want, -want], "n={n} round {round}");
                            }
                            1 => {
                                let r = fabric
                                    .collective(
                                        me,
                                        all,
                                        CollKind::Reduce(1),
                                        Some(tile(v)),
                                        &site(),
                                    )
                                    .expect("max")
                                    .expect("a tile");
                                let top = (round * 16 + n as u32 - 1) as f32;
                                assert_eq!(
                                    r.data,
                                    vec![top, -((round * 16) as f32)],
                                    "round {round}"
                                );
                            }
                            2 => {
                                let root = round % n as u32;
                                let c = (me == root).then(|| tile(v));
                                let r = fabric
                                    .collective(me, all, CollKind::Cast(root), c, &site())
                                    .expect("cast")
                                    .expect("a tile");
                                let want = (round * 16 + root) as f32;
                                assert_eq!(r.data, vec![want, -want], "round {round}");
                            }
                            _ => {
                                let r = fabric
                                    .collective(me, all, CollKind::Barrier, None, &site())
                                    .expect("barrier");
                                assert!(r.is_none());
                            }
                        }
                    }
                    fabric.halt(me);
                });
            }
        });
        assert!(fabric.error().is_none(), "{:?}", fabric.error());
        assert!(!fabric.stopped());
    }
}

/// Ping-pong and ring traffic with blocking receives: the deadlock detector must never
/// fire while a message is on its way (every wake-up marks the waiter running first).
#[test]
fn fabric_message_storm_has_no_false_deadlock() {
    const ROUNDS: i64 = 10_000;
    for n in [2usize, 3, 4] {
        let fabric = LocalFabric::new(n);
        std::thread::scope(|sc| {
            for me in 0..n as u32 {
                let fabric = &fabric;
                sc.spawn(move || {
                    let next = (me + 1) % n as u32;
                    let prev = (me + n as u32 - 1) % n as u32;
                    for i in 0..ROUNDS {
                        fabric
                            .send(me, next, Message::Scalar(i * 64 + me as i64))
                            .expect("room");
                        // Also a message to self, received at once.
                        fabric.send(me, me, Message::Scalar(-i)).expect("room");
                        assert_eq!(fabric.recv(me, me, &site()), Ok(Message::Scalar(-i)));
                        let m = fabric.recv(me, prev, &site()).expect("no deadlock");
                        assert_eq!(m, Message::Scalar(i * 64 + prev as i64));
                    }
                    fabric.halt(me);
                });
            }
        });
        assert!(fabric.error().is_none(), "{:?}", fabric.error());
    }
}

/// A mismatched collective stops every member, whichever order they arrive in, and a
/// member that arrives after the machine stopped does not wait.
#[test]
fn fabric_mismatch_never_hangs() {
    for trial in 0..200u32 {
        let fabric = LocalFabric::new(3);
        let outcomes: Vec<Result<_, CollError>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3u32)
                .map(|me| {
                    let fabric = &fabric;
                    sc.spawn(move || {
                        if (me + trial) % 3 == 0 {
                            std::thread::yield_now();
                        }
                        let kind = if me == trial % 3 {
                            CollKind::Barrier
                        } else {
                            CollKind::Reduce(0)
                        };
                        let c = (kind != CollKind::Barrier).then(|| tile(1.0));
                        let r = fabric.collective(me, 0b111, kind, c, &site());
                        if let Err(CollError::Mismatch(m)) = &r {
                            fabric.fail(me, MachineError::Setup(format!("sentron {me}: {m}")));
                        }
                        r
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            outcomes
                .iter()
                .any(|r| matches!(r, Err(CollError::Mismatch(_)))),
            "trial {trial}: {outcomes:?}"
        );
        assert!(
            outcomes.iter().all(|r| r.is_err()),
            "trial {trial}: {outcomes:?}"
        );
        assert!(fabric.stopped());
    }
}

/// A blocked sentron whose partner halts is a deadlock at once; a sentron that is still
/// running (about to send) keeps it from being one.
#[test]
fn fabric_deadlock_is_exact() {
    let fabric = LocalFabric::new(2);
    let started = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let f = &fabric;
        let s = &started;
        sc.spawn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            // Sentron 1 sends only after a while: no deadlock in between.
            assert_eq!(f.recv(0, 1, &site()), Ok(Message::Scalar(7)));
            // Then waits for a message that never comes: sentron 1 halts.
            assert!(f.recv(0, 1, &site()).is_err());
        });
        sc.spawn(move || {
            while s.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(30));
            assert!(!f.stopped(), "false deadlock while sentron 1 was running");
            f.send(1, 0, Message::Scalar(7)).expect("room");
            f.halt(1);
        });
    });
    match fabric.error() {
        Some(MachineError::Deadlock(d)) => {
            assert_eq!(d.waiters.len(), 1);
            assert!(d.waiters[0].waits_for.contains("halted"), "{:?}", d.waiters);
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
}

// ------------------------------------------------------------------ whole programs

/// One sentron's stream of the stress program: every iteration does an all-reduce sum
/// and max, broadcasts from two roots, a pair (or single-member) reduction, a barrier,
/// and a scalar and a tile message around the ring; every result is checked in the
/// program and errors are summed into r9 (scalars) and t7 (tiles).
fn stress_stream(i: usize, n: usize, iters: u32) -> String {
    let next = (i + 1) % n;
    let prev = (i + n - 1) % n;
    let partner = i ^ 1;
    let (pair, pair_delta) = if partner < n {
        (
            format!("{{{},{}}}", i.min(partner), i.max(partner)),
            Some(partner as i64 - i as i64),
        )
    } else {
        (format!("{{{i}}}"), None)
    };
    let pair_expect = match pair_delta {
        // (i + k n) + (partner + k n) = 2 r5 + (partner - i)
        Some(d) => format!("DADD r13, r5, r5\n DADDI r13, r13, {d}"),
        None => "DADDI r13, r5, 0".to_string(),
    };
    let last = n - 1;
    format!(
        "
.sentron {i}
    DLI r0, {iters}
    DSID r1
    DLI r2, {n}
    DMUL r3, r2, r2
    DLI r4, 0
    DLI r6, {base}
    DLI r9, 0
    DTZERO t7, 1x4
loop:
    DMUL r5, r4, r2
    DADD r5, r5, r1
    DSUB r10, r5, r1
    DADDI r11, r10, {last}
    DADDI r12, r10, {prev}
    DTSPLAT t0, r5, 1x4
    DTSPLAT t1, r5, 1x4 | CREDUCE t0, sum, all
    DTSPLAT t4, r6, 1x4 | CREDUCE t1, max, all
    DTSUB t5, t0, t4
    DTFMA t7, t5, t5 | CNOP
    DTSPLAT t4, r11, 1x4
    DTSUB t5, t1, t4
    DTFMA t7, t5, t5
    DTSPLAT t2, r5, 1x4
    CCAST t2, @0, all
    DTSPLAT t4, r10, 1x4
    DTSUB t5, t2, t4
    DTFMA t7, t5, t5
    DTSPLAT t2, r5, 1x4
    CCAST t2, @{last}, all
    DTSPLAT t4, r11, 1x4
    DTSUB t5, t2, t4
    DTFMA t7, t5, t5
    {pair_expect}
    DTSPLAT t3, r5, 1x4
    CREDUCE t3, sum, {pair}
    DTSPLAT t4, r13, 1x4
    DTSUB t5, t3, t4
    DTFMA t7, t5, t5 | CBAR all
    DTSPLAT t6, r5, 1x4 | CSEND @{next}, r5
    CRECV r7, @{prev}
    ; C sends t6 as it was before the word while D overwrites it (Buffered order)
    DTSPLAT t6, r10, 1x4 | CSEND @{next}, t6
    DSUB r8, r7, r12
    DMUL r8, r8, r8 | CRECV t8, @{prev}
    DADD r9, r9, r8
    DTSPLAT t4, r12, 1x4
    DTSUB t5, t8, t4
    DTFMA t7, t5, t5
    DADDI r4, r4, 1
    DADD r6, r6, r3 | CLOOP r0, loop
    CHALT
",
        base = n * (n - 1) / 2,
    )
}

fn stress_program(n: usize, iters: u32) -> String {
    (0..n).map(|i| stress_stream(i, n, iters)).collect()
}

fn check_stress(report: &vtpu_runtime::RunReport, n: usize, iters: u32) {
    for (i, s) in report.states.iter().enumerate().take(n) {
        assert_eq!(s.scalars[4], iters as i64, "sentron {i} iterations");
        assert_eq!(s.scalars[9], 0, "sentron {i}: wrong ring messages");
        assert_eq!(
            s.tiles[7].data,
            vec![0.0; 4],
            "sentron {i}: wrong collective results"
        );
    }
    for c in &report.counters {
        // 2 sends per iteration, 8 + 16 bytes.
        assert_eq!(c.msgs_sent, 2 * iters as u64);
        assert_eq!(c.msg_bytes, 24 * iters as u64);
    }
}

#[test]
fn stress_collectives_and_messages_fast() {
    let iters = 1000;
    for n in [2usize, 3, 4] {
        let src = stress_program(n, iters);
        for _ in 0..2 {
            let (r, _) = run_on(&src, n, ExecutorKind::Fast);
            let report = r.unwrap_or_else(|e| panic!("n={n}: {e}"));
            check_stress(&report, n, iters);
        }
    }
}

#[test]
fn stress_collectives_and_messages_agree_with_reference() {
    let iters = 60;
    for n in [2usize, 3, 4] {
        let src = stress_program(n, iters);
        let (report, _) = run_both(&src, n);
        check_stress(&report, n, iters);
    }
}

fn run_with_limit(
    src: &str,
    n: usize,
    executor: ExecutorKind,
    word_limit: u64,
) -> Result<vtpu_runtime::RunReport, MachineError> {
    let p = assemble(src);
    let space = vtpu_runtime::build_space(&p, vtpu_phext::Layout::ZOrder).expect("pages");
    let cfg = RunConfig {
        sentrons: n,
        executor,
        word_limit,
        kernel_level: Some(vtpu_kernels::KernelLevel::Scalar),
        ..RunConfig::default()
    };
    vtpu_runtime::run(&p, &space, &cfg)
}

/// The word limit is part of the machine's behaviour: both executors must trap at the
/// same backward branch, not only after 1024 of them.
#[test]
fn word_limit_traps_identically_on_both_executors() {
    let src = "
        DLI r0, 100
    top:
        DADDI r1, r1, 1
        CLOOP r0, top
    ";
    // 1 + 2 * 100 words in all: a limit of 50 is exceeded in the 25th iteration.
    let f = run_with_limit(src, 1, ExecutorKind::Fast, 50);
    let r = run_with_limit(src, 1, ExecutorKind::Reference, 50);
    let (f, r) = match (f, r) {
        (Err(f), Err(r)) => (f, r),
        (f, r) => panic!(
            "both must trap (fast ok={}, reference ok={})",
            f.is_ok(),
            r.is_ok()
        ),
    };
    assert!(matches!(trap_of(&f).kind, TrapKind::WordLimit(50)), "{f}");
    assert_eq!(trap_of(&f), trap_of(&r));
    // A limit the program stays within.
    let f = run_with_limit(src, 1, ExecutorKind::Fast, 201).expect("fast");
    let r = run_with_limit(src, 1, ExecutorKind::Reference, 201).expect("reference");
    assert_eq!(f.states[0].scalars[1], 100);
    assert_eq!(r.states[0].scalars[1], 100);
}

/// A word whose S slot reads what its D slot writes runs S first in the fast executor;
/// when both slots trap, the reported trap must still be the reference's (D's).
#[test]
fn sdc_word_with_two_traps_reports_like_the_reference() {
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x4
        SCLI c0, 1.1.1/1.1.1/1.1.1
        DMOV t0, t5 | SSCATTR t0, c0, r0
    ";
    let (a, b) = fail_both(src, 1);
    assert_eq!(trap_of(&b).kind, TrapKind::EmptyTile(5), "{b}");
    assert_eq!(trap_of(&a), trap_of(&b));
}

#[test]
fn single_member_groups_self_sends_and_root_casts() {
    let src = "
    .sentron 0
        DLI r1, 5
        DTSPLAT t0, r1, 2x3
        CREDUCE t0, sum, {0}
        CCAST t0, @0, {0}
        CBAR {0}
        CSEND @0, r1
        CSEND @0, t0
        CRECV r2, @0
        CRECV t1, @0
        DLI r3, 2
        DTSPLAT t2, r3, 2x3
        CCAST t2, @0, {0,1}
        CHALT
    .sentron 1
        CBAR {1}
        DLI r1, 9
        DTSPLAT t0, r1, 1x1
        CREDUCE t0, max, {1}
        CCAST t5, @0, {0,1}
        CHALT
    ";
    let (report, _) = run_both(src, 2);
    let s0 = &report.states[0];
    assert_eq!(s0.scalars[2], 5);
    assert_eq!(s0.tiles[1].data, vec![5.0; 6]);
    assert_eq!((s0.tiles[1].rows, s0.tiles[1].cols), (2, 3));
    let s1 = &report.states[1];
    assert_eq!(s1.tiles[0].data, vec![9.0]);
    // A non-root member's register may be empty before a broadcast.
    assert_eq!(s1.tiles[5].data, vec![2.0; 6]);
    assert_eq!((s1.tiles[5].rows, s1.tiles[5].cols), (2, 3));
    assert_eq!(report.counters[0].msgs_sent, 2);
    assert_eq!(report.counters[0].msg_bytes, 8 + 24);
}

#[test]
fn receiving_from_oneself_with_nothing_sent_is_a_deadlock() {
    let src = "
    .sentron 0
        CRECV r1, @0
    .sentron 1
        DLI r0, 2000
    top:
        CLOOP r0, top
    ";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let (r, _) = run_on(src, 2, exec);
        let Err(MachineError::Deadlock(d)) = r else {
            panic!("{exec:?}: expected a deadlock, got {:?}", r.map(|_| ()))
        };
        assert_eq!(d.waiters.len(), 1);
        assert!(
            d.waiters[0].waits_for.contains("sentron 0"),
            "{:?}",
            d.waiters
        );
    }
}

#[test]
fn collective_misuse_traps_on_both_executors() {
    type Want = fn(&TrapKind) -> bool;
    let cases: &[(&str, usize, Want)] = &[
        // Root outside the group.
        (
            "DTZERO t0, 1x1\nCCAST t0, @2, {0,1}\n",
            3,
            |k| matches!(k, TrapKind::NotInGroup(_)),
        ),
        // A group without this sentron.
        (
            ".sentron 0\nCBAR {1}\n.sentron 1\nCBAR {1}\n",
            2,
            |k| matches!(k, TrapKind::NotInGroup(_)),
        ),
        // Different roots.
        (
            "DSID r1\nDTSPLAT t0, r1, 1x1\nCBNE r1, r0, other\nCCAST t0, @0, all\nCHALT\nother:\nCCAST t0, @1, all\n",
            3,
            |k| matches!(k, TrapKind::CollectiveMismatch { .. }),
        ),
        // sum against max.
        (
            ".sentron 0\nDTZERO t0, 1x1\nCREDUCE t0, sum, all\n.sentron 1\nDTZERO t0, 1x1\nCREDUCE t0, max, all\n",
            2,
            |k| matches!(k, TrapKind::CollectiveMismatch { .. }),
        ),
        // Shapes that differ.
        (
            ".sentron 0\nDTZERO t0, 1x2\nCREDUCE t0, sum, all\n.sentron 1\nDTZERO t0, 2x1\nCREDUCE t0, sum, all\n.sentron 2\nDTZERO t0, 1x2\nCREDUCE t0, sum, all\n",
            3,
            |k| matches!(k, TrapKind::CollectiveMismatch { .. }),
        ),
        // An empty root tile: the root traps, the others must not wait forever. (They
        // wait only for sentron 0: with sentron 2 in CBAR {1,2}, 1 and 2 would wait for
        // each other, a deadlock that may be found before the trap.)
        (
            ".sentron 0\nCCAST t0, @0, all\n.sentron 1\nCCAST t0, @0, all\n.sentron 2\nCBAR {0,2}\n",
            3,
            |k| matches!(k, TrapKind::EmptyTile(0)),
        ),
    ];
    for (src, n, want) in cases {
        let t0 = Instant::now();
        let (a, b) = fail_both(src, *n);
        assert!(t0.elapsed() < Duration::from_secs(5), "{src}");
        for e in [&a, &b] {
            assert!(want(&trap_of(e).kind), "program:\n{src}\ngot: {e}");
        }
    }
}

/// Views of read-only f16/bf16 pages: matmul weights work, anything that needs f32
/// traps the same way on both executors, nothing panics.
#[test]
fn half_precision_views_in_every_position() {
    let good = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x3 readonly = 1, 2, 3
        .page 1.1.1/1.1.1/1.1.2 f32 2x3 readonly = 1, 0, 1, 0, 1, 0
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        DLI r1, 1
        SGATHERS t1, c1, r1, 1x3
        DTZERO t2, 1x1
        DTMATMUL t2, t0, t1
        DMOV t3, t1
        DTRESHAPE t4, t1, 1
        DTADD t5, t0, t0
        CREDUCE t5, sum, all
    ";
    let (report, _) = run_both(good, 2);
    assert_eq!(report.states[0].tiles[2].data, vec![2.0]);
    assert_eq!(report.states[0].tiles[4].data, vec![0.0, 1.0, 0.0]);
    assert_eq!(report.states[1].tiles[5].data, vec![4.0, 8.0, 12.0]);

    // f16 pages cannot be declared with values; a zero f16 page is enough for dtype
    // rules. Each case must trap with BadDType on both executors.
    let prelude = "
        .page 1.1.1/1.1.1/1.1.1 f16 2x4 readonly
        .page 1.1.1/1.1.1/1.1.2 bf16 1x4 readonly
        .page 1.1.1/1.1.1/1.1.3 f32 1x8
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SCLI c2, 1.1.1/1.1.1/1.1.3
        SGATHER t0, c0
        SGATHER t1, c1
        DTZERO t9, 2x4
    ";
    let bad = [
        "DTADD t2, t0, t9",
        "DTFMA t9, t0, t9",
        "DTSCALE t2, t1, 2",
        "DTRSUM t2, t0",
        "DTEXP t2, t1",
        "SSCATTR t0, c2, r0",
        "CSEND @1, t0",
        "CREDUCE t0, sum, all",
        "CCAST t1, @0, all",
        "DTRESHAPE t3, t0, 8\nDTADD t2, t3, t3",
        "DMOV t3, t0\nDTMAX t2, t3, t3",
        "DTZERO t4, 1x4\nDTMATMUL t4, t1, t1",
    ];
    for b in bad {
        let src = format!("{prelude}\n{b}\n");
        let (a, r) = fail_both(&src, 2);
        for e in [&a, &r] {
            assert!(
                matches!(trap_of(e).kind, TrapKind::BadDType(_)),
                "{b}: got {e}"
            );
        }
        assert_eq!(trap_of(&a).pc, trap_of(&r).pc, "{b}");
    }
    // Matmul with f16 / bf16 weights and a reshaped f16 view: agree exactly.
    let src = format!(
        "{prelude}
        DTZERO t4, 1x4
        DTRESHAPE t5, t0, 4
        DTZERO t6, 1x2
        DTMATMUL t6, t4, t5
        DTZERO t7, 1x1
        DTMATMUL t7, t4, t1
    "
    );
    let (report, _) = run_both(&src, 1);
    assert_eq!(report.states[0].tiles[6].data, vec![0.0, 0.0]);
    assert_eq!(report.states[0].tiles[7].data, vec![0.0]);
}

/// Registers are read before the word even when the C slot reads what D or S write
/// (the fast executor's Buffered order) or D reads what C writes.
#[test]
fn c_slot_reads_and_writes_follow_word_semantics() {
    let src = "
        .page 1.1.1/1.1.1/1.1.1 f32 1x2 = 7, 8
    .sentron 0
        DLI r1, 10
        DTZERO t0, 1x2
        DTZERO t1, 1x1
        SCLI c0, 1.1.1/1.1.1/1.1.1
        DADDI r1, r1, 1 | CSEND @1, r1
        SGATHER t0, c0 | CSEND @1, t0
        DTSPLAT t1, r1, 1x2 | SGATHER t2, c0 | CSEND @1, t1
        DLI r2, 3
        DADDI r3, r2, 100 | CLOOP r2, next
    next:
        CHALT
    .sentron 1
        DLI r2, 1
        DTZERO t0, 3x1
        DTZERO t1, 1x3
        DADD r3, r2, r2 | CRECV r2, @0
        DMOV t5, t0 | CRECV t0, @0
        DTADD t3, t1, t1 | CRECV t1, @0
    ";
    let (report, _) = run_both(src, 2);
    let s0 = &report.states[0];
    assert_eq!(s0.scalars[1], 11);
    assert_eq!(s0.scalars[2], 2);
    assert_eq!(s0.scalars[3], 103);
    assert_eq!(s0.tiles[0].data, vec![7.0, 8.0]);
    assert_eq!(s0.tiles[1].data, vec![11.0, 11.0]);
    let s1 = &report.states[1];
    assert_eq!(
        s1.scalars[2], 10,
        "CSEND must send r1 as it was before the word"
    );
    assert_eq!(
        s1.scalars[3], 2,
        "DADD must read r2 as it was before the word"
    );
    assert_eq!(
        s1.tiles[0].data,
        vec![0.0, 0.0],
        "CSEND must send the old t0"
    );
    assert_eq!(
        (s1.tiles[5].rows, s1.tiles[5].cols),
        (3, 1),
        "DMOV reads the old t0"
    );
    assert_eq!(
        (s1.tiles[1].rows, s1.tiles[1].cols),
        (1, 1),
        "CSEND must send the old t1"
    );
    assert_eq!(
        (s1.tiles[3].rows, s1.tiles[3].cols),
        (1, 3),
        "DTADD reads the old t1"
    );
}

/// A trap in one sentron stops sentrons blocked in collectives and a sentron spinning
/// in a loop, on both executors, promptly. (Sentrons 1 and 2 wait only for sentrons
/// that are still running, so no deadlock is found before the trap.)
#[test]
fn a_trap_stops_collectives_and_spinners() {
    let src = "
    .sentron 0
        DLI r0, 3000
    top:
        CLOOP r0, top
        DLI r1, 0
        DDIV r2, r1, r1
    .sentron 1
        DTZERO t0, 1x1
        CREDUCE t0, sum, all
    .sentron 2
        CBAR {0,2}
    .sentron 3
    spin:
        DTZERO t0, 64x64
        DTZERO t1, 64x64
        DTMATMUL t0, t1, t1 | CJMP spin
    ";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let t0 = Instant::now();
        let (r, _) = run_on(src, 4, exec);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{exec:?} took {:?}",
            t0.elapsed()
        );
        let e = r.expect_err("must fail");
        let t = trap_of(&e);
        assert_eq!(
            (t.sentron, &t.kind),
            (0, &TrapKind::DivByZero),
            "{exec:?}: {e}"
        );
    }
}

/// Waiting in a collective for a sentron that halted is a deadlock as soon as the halt
/// and the wait have both happened, even while another sentron is still working (issue
/// 8: deadlocks among some sentrons); the worker is stopped and named as still running.
#[test]
fn collective_with_a_halted_member_is_a_deadlock() {
    let src = "
    .sentron 0
        CHALT
    .sentron 1
        CBAR all
    .sentron 2
        DLI r0, 5000
    top:
        CLOOP r0, top
        CRECV r1, @1
    ";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let (r, _) = run_on(src, 3, exec);
        let Err(MachineError::Deadlock(d)) = r else {
            panic!("{exec:?}: expected a deadlock, got {:?}", r.map(|_| ()))
        };
        // Sentron 1 waits for the halted sentron 0 and is reported as soon as both
        // happened, with sentron 2 still working. On the fast executor thread timing may
        // instead let sentron 2 reach its CRECV first: then 1 and 2 wait for each other
        // (a cycle, whether or not sentron 0 has halted yet) and both are reported.
        let who: Vec<u32> = d.waiters.iter().map(|w| w.sentron).collect();
        let text = MachineError::Deadlock(d.clone()).to_string();
        match who.as_slice() {
            [1] => {
                assert_eq!(d.still_running, vec![2], "{exec:?}");
                assert!(text.contains("sentron 0 (halted)"), "{text}");
            }
            [1, 2] => assert!(d.still_running.iter().all(|&s| s == 0), "{exec:?}: {text}"),
            other => panic!("{exec:?}: reported {other:?}"),
        }
        if exec == ExecutorKind::Reference {
            assert_eq!(who, vec![1], "the reference is deterministic");
        }
    }
}

/// Words whose C slot waits count once when they retire, on both executors.
#[test]
fn waiting_words_count_once() {
    let src = "
    .sentron 0
        DLI r0, 20000
    top:
        CLOOP r0, top
        DLI r1, 1 | CSEND @1, r0
        CBAR all
    .sentron 1
        DTZERO t0, 1x1 | CRECV r2, @0
        DTADD t1, t0, t0 | CBAR all
    ";
    let (report, _) = run_both(src, 2);
    let c = &report.counters[1];
    assert_eq!(c.siws, 2);
    assert_eq!(c.ops, [2, 0, 2]);
    assert_eq!(c.nops, [0, 2, 0]);
    assert_eq!(c.flops, 1);
}

/// Odd but valid allocations and shapes trap (or work) without panicking.
#[test]
fn unusual_allocations_and_shapes_do_not_panic() {
    let cases = [
        // A block dtype with a shape that is not a whole number of blocks.
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, q8_0, owned, 1x3",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, q4_k, scratch, 3x7",
        // An i32 page read as a tile.
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, i32, owned, 1x4\nSGATHER t0, c0",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, i8, owned, 2x2\nSGATHERS t0, c0, r0, 1x1",
        // Scatter of a long tile into a short page.
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, f32, owned, 1x2\nDTZERO t0, 1x3\nSSCATTR t0, c0, r0",
        // Offsets at the extremes.
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, f32, owned, 1x2\nDLI r1, 9223372036854775807\nSGATHERS t0, c0, r1, 1x1",
        "DTZERO t0, 1x6\nDTRESHAPE t1, t0, 4",
        "DTZERO t0, 1x6\nDTRESHAPE t1, t0, 0",
        "DTZERO t0, 1x6\nDTRESHAPE t1, t0, -3",
        // Causal softmax rows that see nothing, or everything.
        "DLI r1, -10\nDLI r2, 1\nDTZERO t0, 2x4\nDTSOFTMAX t1, t0, r1, r2, 1",
        "DLI r1, -1\nDLI r2, 2\nDTZERO t0, 3x4\nDTSOFTMAX t1, t0, r1, r2, 1",
        "DLI r1, 9223372036854775807\nDLI r2, 1\nDTZERO t0, 2x4\nDTSOFTMAX t1, t0, r1, r2, 1",
        "DLI r1, 0\nDLI r2, -9223372036854775808\nDTZERO t0, 2x4\nDTSOFTMAX t1, t0, r1, r2, 1",
        // Rope positions at the extremes.
        "DLI r1, 9223372036854775807\nDTZERO t0, 2x4\nDTZERO t1, 8x4\nDTROPE t2, t0, t1, r1",
        "DLI r1, -1\nDTZERO t0, 2x4\nDTZERO t1, 8x4\nDTROPEH t2, t0, t1, r1",
        "DTZERO t0, 2x6\nDTZERO t1, 8x4\nDTROPE t2, t0, t1, r0",
        "DTZERO t0, 2x3\nDTZERO t1, 8x3\nDTROPE t2, t0, t1, r0",
        // Register-sized gathers and loads at the extremes.
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, f32, owned, 1x4\nDLI r1, 0\nSGATHERV t0, c0, r0, r1, 4",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, f32, owned, 1x4\nDLI r1, 16777216\nSGATHERV t0, c0, r0, r1, 16777216",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, f32, owned, 1x4\nDLI r1, -1\nSGATHERV t0, c0, r0, r1, 4",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, i32, owned, 1x4\nDLI r1, -9223372036854775808\nSLOAD r2, c0, r1",
        "SCLI c0, 2.2.2/2.2.2/2.2.2\nSALLOC c0, i32, owned, 1x4\nDLI r1, 3\nSLOAD r2, c0, r1",
        // Matmuls whose result would exceed the tile cap, and empty accumulators.
        "DTZERO t0, 8193x1\nDTZERO t1, 8193x1\nDTMM t2, t0, t1",
        "DTZERO t0, 1x4\nDTZERO t1, 2x4\nDTMATMUL t2, t0, t1",
        "DTZERO t0, 2x4\nDTZERO t1, 2x1\nDTRMSNORM t2, t0, t1, 0.00001",
        "DTZERO t0, 2x4\nDTZERO t1, 1x3\nDTRMSNORM t2, t0, t1, 0.00001",
        "DTZERO t0, 2x4\nDTZERO t1, 1x3\nDTADDR t2, t0, t1",
    ];
    for src in cases {
        let (fast, _) = run_on(src, 1, ExecutorKind::Fast);
        let (refr, _) = run_on(src, 1, ExecutorKind::Reference);
        match (&fast, &refr) {
            (Err(a), Err(b)) => {
                let (ta, tb) = (trap_of(a), trap_of(b));
                assert_eq!((ta.pc, &ta.kind), (tb.pc, &tb.kind), "{src}");
            }
            (Ok(a), Ok(b)) => assert_eq!(a.states, b.states, "{src}"),
            _ => panic!(
                "{src}: fast {:?} vs reference {:?}",
                fast.as_ref().err(),
                refr.as_ref().err()
            ),
        }
    }
}

/// A collective's operand is checked before the group is: an empty tile entering a
/// group where another member waits in a different collective traps as an empty tile
/// on both executors (the reference used to report a mismatch instead).
#[test]
fn an_empty_contribution_traps_as_such_on_both_executors() {
    let src = "
    .sentron 0
        CBAR all
    .sentron 1
        CREDUCE t0, sum, all
    ";
    let (a, b) = fail_both(src, 2);
    assert_eq!(trap_of(&b).kind, TrapKind::EmptyTile(0), "{b}");
    assert_eq!(trap_of(&a), trap_of(&b));
}

/// Many generations of one group on the reference executor (whose per-generation
/// results are dropped once every member collected them): results stay right.
#[test]
fn reference_long_collective_loop() {
    let src = "
        DSID r1
        DLI r0, 3000
        DTZERO t1, 1x1
    top:
        DTSPLAT t0, r1, 1x1
        CREDUCE t0, sum, all
        DTADD t1, t1, t0 | CBAR all
        CLOOP r0, top
    ";
    let (r, _) = run_on(src, 3, ExecutorKind::Reference);
    let report = r.expect("runs");
    for s in &report.states {
        assert_eq!(s.tiles[1].data, vec![9000.0]);
    }
}

/// The largest machine: group masks use bit 63, `all` is every bit.
#[test]
fn sixty_four_sentrons_reduce_broadcast_and_message() {
    let body = "
        DSID r1
        DTSPLAT t0, r1, 1x2
        CREDUCE t0, sum, all
        CBAR all
        DTSPLAT t1, r1, 1x1
        CCAST t1, @63, all
        CREDUCE t1, max, all
    ";
    let src = format!(
        "{body}
    .sentron 0
        {body}
        DLI r5, 77
        CSEND @63, r5
        CRECV r6, @63
        DTSPLAT t2, r1, 1x1
        CREDUCE t2, sum, {{0,63}}
    .sentron 63
        {body}
        CRECV r6, @0
        CSEND @0, r1
        DTSPLAT t2, r1, 1x1
        CREDUCE t2, sum, {{0,63}}
    "
    );
    let (report, _) = run_both(&src, 64);
    for s in &report.states {
        assert_eq!(s.tiles[0].data, vec![2016.0, 2016.0]);
        assert_eq!(s.tiles[1].data, vec![63.0]);
    }
    assert_eq!(report.states[0].scalars[6], 63);
    assert_eq!(report.states[63].scalars[6], 77);
    assert_eq!(report.states[0].tiles[2].data, vec![63.0]);
    assert_eq!(report.states[63].tiles[2].data, vec![63.0]);
}
