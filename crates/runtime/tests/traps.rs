//! Bad programs at run time: traps name sentron, pc, op and coordinate; deadlocks name
//! who waits for whom; one sentron's trap stops the others; nothing hangs.

mod common;
use common::*;
use std::time::{Duration, Instant};
use vtpu_runtime::{ExecutorKind, MachineError, TrapKind};

fn trap_of(e: &MachineError) -> &vtpu_runtime::Trap {
    e.as_trap()
        .unwrap_or_else(|| panic!("expected a trap, got: {e}"))
}

#[test]
fn page_fault_names_sentron_pc_op_and_coordinate() {
    let src = "
        SCLI c0, 1.1.1/1.1.1/1.1.9
        SGATHER t0, c0
    ";
    let (a, b) = fail_both(src, 1);
    for e in [&a, &b] {
        let t = trap_of(e);
        assert_eq!((t.sentron, t.pc), (0, 1));
        assert!(matches!(t.kind, TrapKind::PageFault(_)));
        let text = e.to_string();
        assert!(
            text.contains("sentron 0") && text.contains("pc 1"),
            "{text}"
        );
        assert!(
            text.contains("SGATHER") && text.contains("1.1.1/1.1.1/1.1.9"),
            "{text}"
        );
    }
}

#[test]
fn out_of_bounds_read_only_and_dtype_traps() {
    let cases: &[(&str, fn(&TrapKind) -> bool)] = &[
        (
            ".page 1.1.1/1.1.1/1.1.1 f32 1x4
             SCLI c0, 1.1.1/1.1.1/1.1.1
             DLI r1, 3
             SGATHERS t0, c0, r1, 1x2",
            |k| matches!(k, TrapKind::OutOfBounds { .. }),
        ),
        (
            ".page 1.1.1/1.1.1/1.1.1 f32 1x4
             SCLI c0, 1.1.1/1.1.1/1.1.1
             DLI r1, -1
             SGATHERS t0, c0, r1, 1x2",
            |k| matches!(k, TrapKind::OutOfBounds { .. }),
        ),
        (
            ".page 1.1.1/1.1.1/1.1.1 f32 1x4 readonly
             SCLI c0, 1.1.1/1.1.1/1.1.1
             DTZERO t0, 1x4
             SSCATTR t0, c0, r0",
            |k| matches!(k, TrapKind::ReadOnly),
        ),
        (
            ".page 1.1.1/1.1.1/1.1.1 f16 1x4
             SCLI c0, 1.1.1/1.1.1/1.1.1
             SGATHER t0, c0",
            |k| matches!(k, TrapKind::BadDType(_)),
        ),
        ("DTADD t0, t1, t2", |k| matches!(k, TrapKind::EmptyTile(1))),
        ("DTZERO t0, 2x2\nDTZERO t1, 2x3\nDTADD t2, t0, t1", |k| {
            matches!(k, TrapKind::Shape(_))
        }),
        ("DLI r1, 5\nDDIV r2, r1, r0", |k| {
            matches!(k, TrapKind::DivByZero)
        }),
        (
            "DLI r1, -9223372036854775808\nDLI r2, -1\nDREM r3, r1, r2",
            |k| matches!(k, TrapKind::DivOverflow),
        ),
        (
            "SCLI c0, 1.1.1/1.1.1/1.1.999\nSINDEXI c1, c0, scroll, 1",
            |k| matches!(k, TrapKind::CoordRange(_)),
        ),
        (
            "SCLI c0, 1.1.1/1.1.1/1.1.1\nSALLOC c0, f32, owned, 1x1\nSALLOC c0, f32, owned, 1x1",
            |k| matches!(k, TrapKind::AlreadyMapped(_)),
        ),
        ("SCLI c0, 1.1.1/1.1.1/1.1.1\nSFREE c0", |k| {
            matches!(k, TrapKind::PageFault(_))
        }),
    ];
    for (src, want) in cases {
        let (a, b) = fail_both(src, 1);
        for e in [&a, &b] {
            assert!(want(&trap_of(e).kind), "program:\n{src}\ngot: {e}");
        }
        assert_eq!(trap_of(&a).pc, trap_of(&b).pc, "{src}");
    }
}

#[test]
fn mutual_recv_is_a_deadlock_reported_quickly() {
    let src = "
    .sentron 0
        CRECV r1, @1
    .sentron 1
        CRECV r1, @0
    ";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let t0 = Instant::now();
        let (r, _) = run_on(src, 2, exec);
        assert!(t0.elapsed() < Duration::from_secs(1));
        let Err(MachineError::Deadlock(d)) = r else {
            panic!("expected deadlock, got {:?}", r.err())
        };
        assert_eq!(d.waiters.len(), 2);
        let text = MachineError::Deadlock(d).to_string();
        assert!(
            text.contains("sentron 0") && text.contains("a message from sentron 1"),
            "{text}"
        );
    }
}

#[test]
fn waiting_for_a_halted_sentron_is_a_deadlock() {
    let src = "
    .sentron 0
        CHALT
    .sentron 1
        CRECV t0, @0
    .sentron 2
        CBAR all
    ";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let (r, _) = run_on(src, 3, exec);
        let Err(e @ MachineError::Deadlock(_)) = r else {
            panic!("expected deadlock")
        };
        // Sentrons 1 and 2 each wait for the halted sentron 0: whichever blocks first
        // is reported at once (the other one too if it blocked by then: thread timing
        // on the fast executor).
        let text = e.to_string();
        assert!(text.contains("sentron 0 (halted)"), "{text}");
        let MachineError::Deadlock(d) = &e else {
            unreachable!()
        };
        assert!(!d.waiters.is_empty(), "{text}");
        assert!(
            d.waiters.iter().all(|w| w.sentron == 1 || w.sentron == 2),
            "{text}"
        );
        if exec == ExecutorKind::Reference {
            // Round robin: sentron 1 blocks first, and is reported alone.
            assert!(text.contains("a message from sentron 0 (halted)"), "{text}");
        }
    }
}

#[test]
fn a_trap_stops_sentrons_blocked_elsewhere() {
    let src = "
    .sentron 0
        SCLI c0, 9.9.9/9.9.9/9.9.9
        SGATHER t0, c0
        CSEND @1, r0
    .sentron 1
        CRECV r1, @0
    .sentron 2
        DLI r1, 1
    spin:
        CJMP spin
    ";
    // The spinner's word limit is far beyond what it can retire before sentron 0's trap
    // stops it (even on a loaded machine), so the only way to end is that stop.
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let t0 = Instant::now();
        let (r, _) = run_limited(
            src,
            3,
            exec,
            Some(vtpu_kernels::KernelLevel::Scalar),
            4_000_000_000,
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        let e = r.err().expect("must fail");
        assert_eq!(trap_of(&e).sentron, 0, "{e}");
    }
}

#[test]
fn message_kind_and_collective_mismatches_trap() {
    let (a, b) = fail_both(".sentron 0\nCSEND @1, r0\n.sentron 1\nCRECV t0, @0", 2);
    for e in [&a, &b] {
        assert!(
            matches!(trap_of(e).kind, TrapKind::MessageKind { .. }),
            "{e}"
        );
    }
    let (a, b) = fail_both(
        ".sentron 0\nCBAR all\n.sentron 1\nDTZERO t0, 1x1\nCREDUCE t0, sum, all",
        2,
    );
    for e in [&a, &b] {
        assert!(
            matches!(trap_of(e).kind, TrapKind::CollectiveMismatch { .. }),
            "{e}"
        );
    }
    // An all-gather of tiles with different rows names the sentron and both shapes.
    let (a, b) = fail_both(
        ".sentron 0\nDTZERO t0, 2x1\nCREDUCE t0, cat, all\n.sentron 1\nDTZERO t0, 3x1\nCREDUCE t0, cat, all",
        2,
    );
    for e in [&a, &b] {
        assert!(
            matches!(trap_of(e).kind, TrapKind::CollectiveMismatch { .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("sentron 1 contributed a 3x1 tile"),
            "{e}"
        );
    }
}

#[test]
fn endless_loop_hits_the_word_limit() {
    let src = "top:\n CJMP top";
    for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
        let (r, _) = run_on(src, 1, exec);
        let e = r.err().expect("must fail");
        assert!(matches!(trap_of(&e).kind, TrapKind::WordLimit(_)), "{e}");
    }
}

#[test]
fn invalid_programs_are_rejected_before_running() {
    let src = ".sentron 3\nCHALT";
    let (r, _) = run_on(src, 2, ExecutorKind::Fast);
    assert!(matches!(r, Err(MachineError::Invalid(_))), "{:?}", r.err());
}

#[test]
fn a_sender_that_outruns_its_receiver_traps_instead_of_exhausting_memory() {
    // 1 MiB tiles to a sentron that never receives: the mailbox cap (256 MiB) stops it.
    let src = "
    .sentron 0
        DTZERO t0, 512x512
        DLI r1, 300
    top:
        CSEND @1, t0
        CLOOP r1, top
    .sentron 1
        DLI r1, 1
    ";
    let (a, b) = fail_both(src, 2);
    for e in [&a, &b] {
        assert!(
            matches!(trap_of(e).kind, TrapKind::MailboxFull { to: 1, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("mailbox to sentron 1 is full"),
            "{e}"
        );
    }
}
