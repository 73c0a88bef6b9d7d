//! The memory budget (issue 8, item 1): a program that asks for more tile, message or
//! page memory than the machine's budget traps, naming the sentron, pc, op and bytes,
//! on both executors; memory given back (SFREE, received messages, reused buffers)
//! can be asked for again. Budgets here are small so the tests stay light.

mod common;
use common::assemble;
use vtpu_phext::Layout;
use vtpu_runtime::{ExecutorKind, MachineError, RunConfig, RunReport, TrapKind};

const BOTH: [ExecutorKind; 2] = [ExecutorKind::Fast, ExecutorKind::Reference];
const MIB: u64 = 1 << 20;

fn run_with(
    src: &str,
    sentrons: usize,
    exec: ExecutorKind,
    limit: u64,
) -> Result<RunReport, MachineError> {
    let p = assemble(src);
    let space = vtpu_runtime::build_space(&p, Layout::ZOrder).expect("pages");
    let cfg = RunConfig {
        sentrons,
        executor: exec,
        mem_limit: Some(limit),
        word_limit: 10_000_000,
        ..RunConfig::default()
    };
    vtpu_runtime::run(&p, &space, &cfg)
}

fn over_budget(r: Result<RunReport, MachineError>, what: &str) -> vtpu_runtime::Trap {
    match r {
        Err(MachineError::Trap(t)) if matches!(t.kind, TrapKind::OverBudget { .. }) => *t,
        Err(e) => panic!("{what}: expected an out-of-memory trap, got: {e}"),
        Ok(_) => panic!("{what}: expected an out-of-memory trap, the run completed"),
    }
}

#[test]
fn sixteen_big_tiles_trap_instead_of_aborting() {
    // 16 tiles of 4 MiB under a 20 MiB budget.
    let src: String = (0..16)
        .map(|i| format!("DTZERO t{i}, 1024x1024\n"))
        .collect();
    for exec in BOTH {
        let t = over_budget(run_with(&src, 1, exec, 20 * MIB), &format!("{exec:?}"));
        assert_eq!(t.sentron, 0);
        assert!(t.op.starts_with("DTZERO t"), "{exec:?}: {}", t.op);
        let TrapKind::OverBudget {
            asked,
            in_use,
            limit,
        } = t.kind
        else {
            unreachable!()
        };
        assert_eq!(limit, 20 * MIB);
        assert!(in_use + asked > limit, "{exec:?}");
        // The fast executor charges what it allocates (5 x 4 MiB fit), the reference
        // four copies of its registers (one tile fits).
        let tiles = if exec == ExecutorKind::Fast { 5 } else { 1 };
        assert_eq!(
            t.pc, tiles,
            "{exec:?}: trapped at the first tile past the budget"
        );
        let text = MachineError::Trap(Box::new(t)).to_string();
        assert!(
            text.contains("trap in sentron 0 at pc") && text.contains("bytes"),
            "{text}"
        );
    }
}

#[test]
fn many_sentrons_share_one_budget() {
    let src = "DTZERO t0, 1024x1024\nDTZERO t1, 1024x1024\nDTADD t2, t0, t1\n";
    for exec in BOTH {
        let t = over_budget(run_with(src, 64, exec, 64 * MIB), &format!("{exec:?}"));
        assert!(t.op.starts_with("DT"), "{exec:?}: {}", t.op);
        // Within budget the same program runs.
        run_with(src, 2, exec, 256 * MIB).unwrap_or_else(|e| panic!("{exec:?}: {e}"));
    }
}

#[test]
fn pages_are_charged_and_freeing_gives_them_back() {
    let grow = "SCLI c0, 1.1.1/1.1.1/1.1.1\nSALLOC c0, f32, scratch, 1024x1024\nDLI r1, 1\nSINDEX c0, c0, scroll, r1\nSALLOC c0, f32, scratch, 1024x1024\nSINDEX c0, c0, scroll, r1\nSALLOC c0, f32, scratch, 1024x1024\n";
    for exec in BOTH {
        let t = over_budget(run_with(grow, 1, exec, 10 * MIB), &format!("{exec:?}"));
        assert_eq!(
            (t.pc, t.op.as_str()),
            (6, "SALLOC c0, f32, scratch, 1024x1024"),
            "{exec:?}"
        );
        assert!(t.coord.is_some(), "{exec:?}: names the page");
    }
    // A loop that allocates and frees 4 MiB a hundred times fits a 10 MiB budget.
    let churn = "SCLI c0, 1.1.1/1.1.1/1.1.1\nDLI r0, 100\ntop:\nSALLOC c0, f32, scratch, 1024x1024\nSFREE c0\nCLOOP r0, top\n";
    for exec in BOTH {
        run_with(churn, 1, exec, 10 * MIB).unwrap_or_else(|e| panic!("{exec:?}: {e}"));
    }
}

#[test]
fn a_sender_that_outruns_its_receiver_meets_the_budget() {
    // 4 MiB messages that are never received: the budget (16 MiB), not the 256 MiB
    // mailbox cap, stops the sender.
    let src =
        ".sentron 0\nDTZERO t0, 1024x1024\ntop:\nCSEND @1, t0\nCJMP top\n.sentron 1\nCBAR {1}\n";
    for exec in BOTH {
        let t = over_budget(run_with(src, 2, exec, 16 * MIB), &format!("{exec:?}"));
        assert_eq!((t.sentron, t.op.as_str()), (0, "CSEND @1, t0"), "{exec:?}");
    }
    // Messages that are received are given back: a ping-pong of 200 MiB in 1 MiB tiles
    // runs under a 128 MiB budget (each fast sentron may keep up to 33 buffers: its
    // spare and a pool of 32).
    let ping = ".sentron 0\nDLI r0, 200\nDTZERO t0, 512x512\ntop:\nCSEND @1, t0\nCRECV t0, @1\nCLOOP r0, top\n.sentron 1\nDLI r0, 200\nback:\nCRECV t0, @0\nCSEND @0, t0\nCLOOP r0, back\n";
    for exec in BOTH {
        run_with(ping, 2, exec, 128 * MIB).unwrap_or_else(|e| panic!("{exec:?}: {e}"));
    }
}

#[test]
fn a_space_beyond_the_budget_fails_before_the_run() {
    let src = ".page 1.1.1/1.1.1/1.1.1 f32 1024x1024\nCHALT\n";
    for exec in BOTH {
        match run_with(src, 1, exec, MIB) {
            Err(MachineError::Setup(m)) => {
                assert!(m.contains("more than the memory budget"), "{m}")
            }
            other => panic!("{exec:?}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn the_default_budget_on_this_machine() {
    let d = vtpu_runtime::budget::default_limit();
    println!(
        "default memory budget: {d} bytes ({:.1} GiB)",
        d as f64 / (1u64 << 30) as f64
    );
    assert!(d >= 64 * MIB, "a budget too small to run anything: {d}");
}
