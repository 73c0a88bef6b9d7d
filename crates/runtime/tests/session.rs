//! Persistent sessions: the same results and counters as `run`, run after run; a trap
//! or deadlock in one run is reported and the next run works; profiling counts ops.

mod common;
use common::*;
use std::sync::Arc;
use vtpu_phext::{Coord, Layout};
use vtpu_runtime::{ExecutorKind, MachineError, RunConfig, Session};

/// Each sentron reads the argument page (i32: [offset]), gathers one row of a table at
/// that offset, all-reduces it, and sentron 0 adds it into an accumulator page.
const SRC: &str = "
    .page 1.1.1/1.1.1/1.1.1 i32 1x1
    .page 1.1.1/1.1.1/1.1.2 f32 3x2 readonly = 1, 2, 3, 4, 5, 6
    .page 1.1.1/1.1.1/1.1.3 f32 1x2
    .spmd
    SCLI c0, 1.1.1/1.1.1/1.1.1
    SCLI c1, 1.1.1/1.1.1/1.1.2
    SCLI c2, 1.1.1/1.1.1/1.1.3
    SLOAD r1, c0, r0
    DLI r2, 1
    SGATHERV t0, c1, r1, r2, 2
    CREDUCE t0, sum, all
    DSID r3
    CBNE r3, r0, done
    SGATHER t1, c2
    DTADD t2, t1, t0
    SSCATTR t2, c2, r0
done:
    CHALT
";

fn set_arg(space: &vtpu_phext::PhextSpace, v: i32) {
    let p = space
        .get(Coord::parse("1.1.1/1.1.1/1.1.1").unwrap())
        .unwrap();
    p.write(|b| b[..4].copy_from_slice(&v.to_le_bytes()))
        .unwrap();
}

fn cfg(n: usize) -> RunConfig {
    RunConfig {
        sentrons: n,
        executor: ExecutorKind::Fast,
        pin: false,
        word_limit: 1_000_000,
        ..RunConfig::default()
    }
}

#[test]
fn session_runs_agree_with_run_and_keep_pages() {
    let p = assemble(SRC);
    for n in [1usize, 2, 3] {
        let space = Arc::new(vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap());
        let mut s = Session::new(&p, Arc::clone(&space), &cfg(n)).unwrap();
        let reference_space = vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap();
        for (i, off) in [0, 2, 4, 2].into_iter().enumerate() {
            set_arg(&space, off);
            set_arg(&reference_space, off);
            let got = s.run().unwrap();
            let want = vtpu_runtime::run(&p, &reference_space, &cfg(n)).unwrap();
            let strip = |c: &vtpu_runtime::Counters| {
                let mut v = c.virtual_part();
                // A session's translation caches stay warm from run to run.
                if i > 0 {
                    (v.ppt_hits, v.ppt_misses) = (0, 0);
                }
                v
            };
            let g: Vec<_> = got.counters.iter().map(strip).collect();
            let w: Vec<_> = want.counters.iter().map(strip).collect();
            assert_eq!(g, w, "run {i} with {n} sentrons");
            assert!(got.host_wall_ns > 0);
        }
        // Rows [1,2] + [3,4] + [5,6] + [3,4], times n sentrons, accumulated over the runs.
        let k = n as f32;
        assert_eq!(
            read_f32(&space, "1.1.1/1.1.1/1.1.3"),
            vec![12.0 * k, 16.0 * k],
            "{n} sentrons"
        );
        assert_eq!(
            read_f32(&space, "1.1.1/1.1.1/1.1.3"),
            read_f32(&reference_space, "1.1.1/1.1.1/1.1.3")
        );
    }
}

#[test]
fn a_trap_is_reported_and_the_next_run_works() {
    let p = assemble(SRC);
    let space = Arc::new(vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap());
    let mut s = Session::new(&p, Arc::clone(&space), &cfg(2)).unwrap();
    set_arg(&space, 5); // one row past the 3x2 table
    match s.run() {
        Err(MachineError::Trap(t)) => {
            assert!(
                matches!(t.kind, vtpu_runtime::TrapKind::OutOfBounds { .. }),
                "{t}"
            )
        }
        other => panic!("expected a trap, got {:?}", other.map(|r| r.counters.len())),
    }
    set_arg(&space, 0);
    s.run().unwrap();
    assert_eq!(read_f32(&space, "1.1.1/1.1.1/1.1.3"), vec![2.0, 4.0]);
}

#[test]
fn a_deadlock_is_reported_and_dropping_the_session_does_not_hang() {
    let p = assemble(
        "
        .sentron 0
            CRECV r1, @1
        .sentron 1
            CRECV r1, @0
        ",
    );
    let space = Arc::new(vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap());
    let mut s = Session::new(&p, space, &cfg(2)).unwrap();
    for _ in 0..2 {
        assert!(matches!(s.run(), Err(MachineError::Deadlock(_))));
    }
}

#[test]
fn profiling_counts_every_op_and_invalid_programs_are_refused() {
    let p = assemble(SRC);
    let space = Arc::new(vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap());
    let mut s = Session::new(&p, Arc::clone(&space), &cfg(2)).unwrap();
    s.set_profile(true);
    let r = s.run().unwrap();
    let prof = r.profile.expect("profile");
    let total: u64 = r.counters.iter().map(|c| c.total_ops()).sum();
    let counted: u64 = prof.rows().iter().map(|(_, s)| s.count).sum();
    assert_eq!(counted, total);
    assert!(prof.op_ns() > 0);
    s.set_profile(false);
    assert!(s.run().unwrap().profile.is_none());

    let mut invalid = assemble("DLI r1, 1");
    invalid.streams[0].words[0].slots[0].args[0] = 200;
    assert!(matches!(
        Session::new(&invalid, space, &cfg(1)),
        Err(MachineError::Invalid(_))
    ));
}

/// The profile's bytes are host memory moved: a gather of a read-only page is a view
/// (nothing moved), the DTMM that reads it counts the weights, and a gather of a
/// writable page is a copy.
#[test]
fn profiled_bytes_count_views_once_in_the_op_that_reads_them() {
    let p = assemble(
        "
        .page 1.1.1/1.1.1/1.1.1 f32 1x4 = 1, 2, 3, 4
        .page 1.1.1/1.1.1/1.1.2 f32 8x4 readonly = 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 1, 0, 1, 0
        SCLI c0, 1.1.1/1.1.1/1.1.1
        SCLI c1, 1.1.1/1.1.1/1.1.2
        SGATHER t0, c0
        SGATHER t1, c1
        DTMM t2, t0, t1
        ",
    );
    let space = Arc::new(vtpu_runtime::build_space(&p, Layout::ZOrder).unwrap());
    let mut s = Session::new(&p, space, &cfg(1)).unwrap();
    s.set_profile(true);
    let prof = s.run().unwrap().profile.expect("profile");
    let bytes = |code: vtpu_isa::Opcode| {
        prof.rows()
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, s)| (s.count, s.bytes))
            .expect("op ran")
    };
    // Two gathers: the writable x (16 bytes copied) and the read-only w (a view).
    assert_eq!(bytes(vtpu_isa::Opcode::SGather), (2, 16));
    // x (16) + w (8 x 4 f32 = 128) read, y (8 f32 = 32) written.
    assert_eq!(bytes(vtpu_isa::Opcode::DTMm), (1, 16 + 128 + 32));
}
