//! Shared test plumbing: assemble, run on both executors, compare.
#![allow(dead_code)]

use vtpu_phext::{Layout, PhextSpace};
use vtpu_runtime::{ExecutorKind, MachineError, RunConfig, RunReport};

pub fn assemble(src: &str) -> vtpu_isa::Program {
    match vtpu_isa::asm::assemble_file("test.vasm", src) {
        Ok(p) => p,
        Err(e) => panic!("test program does not assemble: {e}"),
    }
}

/// Run on a fresh space with the fast executor's kernels at their scalar level (which
/// computes exactly what the reference executor computes); returns the report (or
/// error) and the space afterwards.
pub fn run_on(
    src: &str,
    sentrons: usize,
    executor: ExecutorKind,
) -> (Result<RunReport, MachineError>, PhextSpace) {
    run_at(
        src,
        sentrons,
        executor,
        Some(vtpu_kernels::KernelLevel::Scalar),
    )
}

/// Like `run_on`, at a chosen kernel level (None: the best this CPU has).
pub fn run_at(
    src: &str,
    sentrons: usize,
    executor: ExecutorKind,
    kernel_level: Option<vtpu_kernels::KernelLevel>,
) -> (Result<RunReport, MachineError>, PhextSpace) {
    run_limited(src, sentrons, executor, kernel_level, 1_000_000)
}

/// Like `run_at`, with a chosen word limit per sentron.
pub fn run_limited(
    src: &str,
    sentrons: usize,
    executor: ExecutorKind,
    kernel_level: Option<vtpu_kernels::KernelLevel>,
    word_limit: u64,
) -> (Result<RunReport, MachineError>, PhextSpace) {
    let p = assemble(src);
    let space = vtpu_runtime::build_space(&p, Layout::ZOrder).expect("pages load");
    let cfg = RunConfig {
        sentrons,
        executor,
        word_limit,
        kernel_level,
        ..RunConfig::default()
    };
    (vtpu_runtime::run(&p, &space, &cfg), space)
}

/// All f32 page contents of a space, by coordinate.
pub fn page_dump(space: &PhextSpace) -> Vec<(String, Vec<u8>)> {
    space
        .coords()
        .into_iter()
        .filter_map(|c| {
            space
                .get(c)
                .map(|p| (c.to_string(), p.read(|b| b.to_vec())))
        })
        .collect()
}

/// Run on both executors and insist they agree exactly: final registers, pages and
/// virtual counters. (The fast executor's kernels are forced to their scalar level,
/// which computes exactly what the reference executor computes; SIMD kernels are
/// checked against the scalar ones separately, with derived tolerances.)
pub fn run_both(src: &str, sentrons: usize) -> (RunReport, PhextSpace) {
    let (fast, fs) = run_on(src, sentrons, ExecutorKind::Fast);
    let (refr, rs) = run_on(src, sentrons, ExecutorKind::Reference);
    let fast = fast.unwrap_or_else(|e| panic!("fast executor failed: {e}"));
    let refr = refr.unwrap_or_else(|e| panic!("reference executor failed: {e}"));
    // Debug text, so that NaN results compare equal to themselves.
    assert_eq!(
        format!("{:?}", fast.states),
        format!("{:?}", refr.states),
        "final registers differ"
    );
    assert_eq!(page_dump(&fs), page_dump(&rs), "final pages differ");
    let fv: Vec<_> = fast.counters.iter().map(|c| c.virtual_part()).collect();
    let rv: Vec<_> = refr.counters.iter().map(|c| c.virtual_part()).collect();
    assert_eq!(fv, rv, "virtual counters differ");
    (fast, fs)
}

/// Run on both executors and return both errors (they must fail the same way).
pub fn fail_both(src: &str, sentrons: usize) -> (MachineError, MachineError) {
    let (fast, _) = run_on(src, sentrons, ExecutorKind::Fast);
    let (refr, _) = run_on(src, sentrons, ExecutorKind::Reference);
    match (fast, refr) {
        (Err(a), Err(b)) => (a, b),
        (a, b) => panic!(
            "expected both to fail, got fast ok={} ref ok={}",
            a.is_ok(),
            b.is_ok()
        ),
    }
}

pub fn read_f32(space: &PhextSpace, coord: &str) -> Vec<f32> {
    let c = vtpu_phext::Coord::parse(coord).expect("coord");
    let p = space.get(c).unwrap_or_else(|| panic!("no page at {coord}"));
    let mut v = vec![0.0; p.elems()];
    p.read_f32(0, &mut v).expect("f32 page");
    v
}
