//! Deadlocks among some sentrons (issue 8, item 2): a cycle in the wait-for graph is
//! reported as soon as it closes, while other sentrons still run, on both executors;
//! waits that a running sentron may still satisfy are never reported.
//!
//! `cargo test -p vtpu-runtime --test partial_deadlock -- --nocapture` prints the time
//! to report.

mod common;
use common::*;
use std::time::{Duration, Instant};
use vtpu_runtime::{ExecutorKind, MachineError};

const BOTH: [ExecutorKind; 2] = [ExecutorKind::Fast, ExecutorKind::Reference];

/// A sentron that spins for ever (until the word limit below, which is far beyond what
/// the test waits for: hitting it means the deadlock was missed).
const SPIN: &str = "
        DLI r0, 1
    spin:
        CBNE r0, r31, spin
";

/// Word limit for the spinner: hitting it (a word-limit trap, not a deadlock) means the
/// deadlock was missed. The fast executor reaches 400 M words in about a second or
/// more; the reference executor is far slower, so it gets fewer.
fn spin_limit(exec: ExecutorKind) -> u64 {
    match exec {
        ExecutorKind::Fast => 400_000_000,
        ExecutorKind::Reference => 20_000_000,
    }
}

fn deadlock_of(
    r: Result<vtpu_runtime::RunReport, MachineError>,
    what: &str,
) -> vtpu_runtime::Deadlock {
    match r {
        Err(MachineError::Deadlock(d)) => d,
        Err(e) => panic!("{what}: expected a deadlock, got: {e}"),
        Ok(_) => panic!("{what}: expected a deadlock, the run completed"),
    }
}

fn ids(d: &vtpu_runtime::Deadlock) -> Vec<u32> {
    d.waiters.iter().map(|w| w.sentron).collect()
}

#[test]
fn two_sentron_message_cycle_beside_a_spinner_is_reported_quickly() {
    let src = format!(
        "
    .sentron 0
        DLI r1, 5
        CRECV r2, @1
    .sentron 1
        CRECV r2, @0
    .sentron 2
    {SPIN}
    "
    );
    for exec in BOTH {
        let t0 = Instant::now();
        let (r, _) = run_limited(&src, 3, exec, None, spin_limit(exec));
        let took = t0.elapsed();
        let d = deadlock_of(r, &format!("{exec:?}"));
        println!("{exec:?}: partial deadlock reported in {took:?}");
        assert!(took < Duration::from_secs(2), "{exec:?}: took {took:?}");
        assert_eq!(ids(&d), vec![0, 1], "{exec:?}");
        assert_eq!(d.still_running, vec![2], "{exec:?}");
        assert_eq!(d.witness, "0 -> 1 -> 0", "{exec:?}");
        let text = MachineError::Deadlock(d).to_string();
        assert!(text.contains("sentron 0 at pc 1"), "{exec:?}: {text}");
        assert!(
            text.contains("a message from sentron 1"),
            "{exec:?}: {text}"
        );
        assert!(text.contains("still running"), "{exec:?}: {text}");
    }
}

#[test]
fn cycle_through_a_collective_beside_a_spinner_is_reported() {
    // 0 waits in a barrier of {0,1}; 1 waits for a message from 0 first. 2 spins and
    // is not in the group, so nothing it does can help.
    let src = format!(
        "
    .sentron 0
        CBAR {{0,1}}
        CSEND @1, r0
    .sentron 1
        CRECV r1, @0
        CBAR {{0,1}}
    .sentron 2
    {SPIN}
    "
    );
    for exec in BOTH {
        let (r, _) = run_limited(&src, 3, exec, None, spin_limit(exec));
        let d = deadlock_of(r, &format!("{exec:?}"));
        assert_eq!(ids(&d), vec![0, 1], "{exec:?}");
        assert_eq!(d.witness, "0 -> 1 -> 0", "{exec:?}");
        assert!(
            d.waiters[0].waits_for.contains("CBAR") || d.waiters[0].waits_for.contains("group"),
            "{exec:?}: {:?}",
            d.waiters
        );
    }
}

#[test]
fn collective_that_includes_the_spinner_and_a_cycle_is_still_stuck() {
    // 0 is in CBAR all (waits for 1 and 2); 1 waits for a message from 0. Even if 2
    // arrived, 1 never does: stuck at once, while 2 spins.
    let src = format!(
        "
    .sentron 0
        CBAR all
    .sentron 1
        CRECV r1, @0
        CBAR all
    .sentron 2
    {SPIN}
    "
    );
    for exec in BOTH {
        let (r, _) = run_limited(&src, 3, exec, None, spin_limit(exec));
        let d = deadlock_of(r, &format!("{exec:?}"));
        assert_eq!(ids(&d), vec![0, 1], "{exec:?}");
    }
}

#[test]
fn three_sentron_ring_beside_two_spinners() {
    let src = format!(
        "
    .sentron 0
        CRECV r1, @2
    .sentron 1
        CRECV r1, @0
    .sentron 2
        CRECV r1, @1
    .sentron 3
    {SPIN}
    .sentron 4
    {SPIN}
    "
    );
    for exec in BOTH {
        let (r, _) = run_limited(&src, 5, exec, None, spin_limit(exec));
        let d = deadlock_of(r, &format!("{exec:?}"));
        assert_eq!(ids(&d), vec![0, 1, 2], "{exec:?}");
        assert_eq!(d.still_running, vec![3, 4], "{exec:?}");
        assert_eq!(d.witness, "0 -> 2 -> 1 -> 0", "{exec:?}");
    }
}

#[test]
fn waiting_for_a_halted_sentron_is_reported_while_another_spins() {
    let src = format!(
        "
    .sentron 0
        CHALT
    .sentron 1
        CRECV r1, @0
    .sentron 2
    {SPIN}
    "
    );
    for exec in BOTH {
        let (r, _) = run_limited(&src, 3, exec, None, spin_limit(exec));
        let d = deadlock_of(r, &format!("{exec:?}"));
        assert_eq!(ids(&d), vec![1], "{exec:?}");
        assert_eq!(d.witness, "1 -> 0", "{exec:?}");
        assert!(d.waiters[0].waits_for.contains("halted"), "{exec:?}: {d:?}");
    }
}

/// Waiting for a sentron that is busy but will send is not a deadlock, however long it
/// takes, and neither is a chain of waits that ends at it.
#[test]
fn waits_on_a_busy_sentron_are_not_reported() {
    let src = "
    .sentron 0
        CRECV r1, @1
        CSEND @2, r1
    .sentron 1
        DLI r0, 30000
    top:
        CLOOP r0, top
        DLI r2, 7
        CSEND @0, r2
        CBAR {1,2}
    .sentron 2
        CRECV r1, @0
        CBAR {1,2}
    ";
    for exec in BOTH {
        let (r, _) = run_limited(src, 3, exec, None, 10_000_000);
        let report = r.unwrap_or_else(|e| panic!("{exec:?}: {e}"));
        assert_eq!(report.states[2].scalars[1], 7, "{exec:?}");
    }
}

/// A message storm in a ring with one sentron spinning beside it: the check runs on
/// every block and must never fire falsely.
#[test]
fn ring_traffic_beside_a_spinner_has_no_false_deadlock() {
    let mut src = String::new();
    let n = 4;
    for i in 0..n {
        let (next, prev) = ((i + 1) % n, (i + n - 1) % n);
        src.push_str(&format!(
            "
    .sentron {i}
        DLI r0, 2000
    top:
        CSEND @{next}, r0
        CRECV r1, @{prev}
        CBAR {{0,1,2,3}}
        CLOOP r0, top
"
        ));
    }
    // Sentron 4 spins a while, then halts: it is in no group.
    src.push_str(
        "
    .sentron 4
        DLI r0, 200000
    s:
        CLOOP r0, s
",
    );
    for exec in BOTH {
        let (r, _) = run_limited(&src, 5, exec, None, 10_000_000);
        if let Err(e) = r {
            panic!("{exec:?}: {e}");
        }
    }
}
