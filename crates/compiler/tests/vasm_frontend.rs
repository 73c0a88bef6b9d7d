//! `.vasm` input: the repository's example programs and hand-written ones compile,
//! validate and leave the same pages as the input program on the reference executor.

mod common;

use vtpu_compiler::{compile_program, CompileOptions};
use vtpu_runtime::ExecutorKind;

fn check(name: &str, src: &str, sentrons: usize, frontend: &str) -> vtpu_compiler::Compiled {
    let p = vtpu_isa::assemble_file(name, src).expect("assembles");
    let c =
        compile_program(&p, &CompileOptions::packed()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (r0, pages0) = common::run(&p, sentrons, ExecutorKind::Reference);
    let (r1, pages1) = common::run(&c.program, sentrons, ExecutorKind::Reference);
    common::same_pages(&pages0, &pages1, name);
    assert!(
        r1.total().siws <= r0.total().siws,
        "{name}: packing added words"
    );
    for s in &c.streams {
        assert!(
            s.frontend.starts_with(frontend),
            "{name}: frontend {}",
            s.frontend
        );
    }
    c
}

#[test]
fn repository_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vasm/");
    let micro = std::fs::read_to_string(format!("{root}microvtpu.vasm")).expect("read");
    let c = check("microvtpu.vasm", &micro, 2, "vasm, renamed");
    assert!(
        c.program.total_words() < 21,
        "microvtpu packs: {} words",
        c.program.total_words()
    );
    let loop_sum = std::fs::read_to_string(format!("{root}loop_sum.vasm")).expect("read");
    // loop_sum uses its loop counter as data and branches: compiled in place.
    check("loop_sum.vasm", &loop_sum, 2, "vasm, in place");
}

const COUNTED: &str = "
.page 1.1.1/1.1.1/1.1.1 f32 8x4 readonly = 1,2,3,4, 5,6,7,8, 1,1,1,1, 2,2,2,2, 3,3,3,3, 4,4,4,4, 0.5,0.5,0.5,0.5, 9,9,9,9
.page 1.1.1/1.1.2/1.1.1 f32 8x4
    SCLI c0, 1.1.1/1.1.1/1.1.1
    SCLI c1, 1.1.1/1.1.2/1.1.1
    DLI r0, 0
    DLI r5, 4
    DTZERO t3, 1x4
loop:
    SGATHERS t0, c0, r0, 2x4
    DTRSUM t1, t0
    DTADD t2, t0, t0
    SSCATTR t2, c1, r0
    DADDI r0, r0, 8
    CLOOP r5, loop
    DADDI r1, r0, -8
    SGATHERS t4, c1, r1, 1x4
    DLI r2, 0
    SSCATTR t4, c1, r2
";

#[test]
fn counted_loop_is_renamed_and_pipelined() {
    let c = check("counted.vasm", COUNTED, 1, "vasm, renamed");
    let l = &c.streams[0].loops[0];
    assert_eq!(l.trip, 4);
    // DTZERO's and DTRSUM's results are dead in the input; the compiler keeps user ops
    // (it does not delete them) and the dead-op check reports exactly those.
    let dead = vtpu_isa::validate::dead_ops(&c.program);
    assert!(!dead.is_empty());
    assert!(
        dead.iter()
            .all(|d| d.op.starts_with("DTZERO") || d.op.starts_with("DTRSUM")),
        "{dead:?}"
    );
}

#[test]
fn branches_fall_back_to_in_place() {
    let src = "
.page 1.1.1/1.1.1/1.1.1 f32 1x4
    DLI r0, 3
    DLI r1, 0
    DLI r2, 1
    SCLI c0, 1.1.1/1.1.1/1.1.1
top:
    DADD r1, r1, r2
    DADDI r0, r0, -1
    CBNE r0, r2, top
    DTSPLAT t0, r1, 1x4
    DLI r3, 0
    SSCATTR t0, c0, r3
    CHALT
";
    check("branch.vasm", src, 1, "vasm, in place");
}

#[test]
fn wrong_pipe_is_an_error() {
    let mut p = vtpu_isa::assemble("DLI r0, 1\n").expect("assembles");
    // Build a word with a D op in the S slot, as only code (not the assembler) can.
    p.streams[0].words[0].slots[1] = p.streams[0].words[0].slots[0];
    let e = compile_program(&p, &CompileOptions::packed()).expect_err("must fail");
    assert!(e.to_string().contains("slot"), "{e}");
}

#[test]
fn every_operand_kind_compiles_in_place() {
    // The ISA's kitchen-sink program (branches, every op, packed input words).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/asm/kitchen_sink.vasm"
    );
    let src = std::fs::read_to_string(path).expect("read");
    let p = vtpu_isa::assemble_file("kitchen_sink.vasm", &src).expect("assembles");
    let c = compile_program(&p, &CompileOptions::packed()).expect("compiles");
    assert!(c.program.total_words() <= p.total_words());
    let ops = |q: &vtpu_isa::Program| {
        q.streams
            .iter()
            .flat_map(|s| &s.words)
            .map(|w| w.op_count())
            .sum::<usize>()
    };
    assert_eq!(
        ops(&c.program),
        ops(&p),
        "in-place scheduling keeps every op"
    );
}
