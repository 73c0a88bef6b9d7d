//! Windows (SWINDOW): DTMM / DTMMN read the page behind a window operand when they run,
//! so the scheduler must treat that use as a page read of the window's page. Each test
//! builds a program where a scatter to the window's page follows the DTMM in program
//! order and could be hoisted above it by dependencies that ignore the window (the
//! control test shows the scheduler does hoist it when the operand is a copy), and
//! checks the packed order (in the loop, where the order is dynamic: that every
//! iteration reads what the previous one wrote) and that the pages match the unpacked
//! program's on the reference executor, which runs fewer words packed.

mod common;

use vtpu_compiler::{compile, compile_program, Arg, CompileOptions, Graph, Value};
use vtpu_isa::{Opcode, PageDecl, PageInitData, Program};
use vtpu_phext::{Coord, DType, PageKind};
use vtpu_runtime::ExecutorKind;

fn coord(scroll: u32) -> Coord {
    Coord::new([1, 1, 1, 1, 1, 1, 1, 1, scroll]).expect("valid coordinate")
}

/// The window's page P, its replacement data Q, the activations A and the output O.
const P: u32 = 1;
const Q: u32 = 2;
const A: u32 = 3;
const O: u32 = 4;

fn page(g: &mut Graph, scroll: u32, rows: u32, cols: u32, salt: f32) {
    let data = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37 + salt).sin())
        .collect();
    g.page(PageDecl {
        coord: coord(scroll),
        dtype: DType::F32,
        shape: [rows, cols],
        kind: PageKind::Owned,
        read_only: false,
        init: PageInitData::F32(data),
    });
}

/// Word index of the `nth` op with opcode `code` in stream 0 (tests only).
fn word_of(p: &Program, code: Opcode, nth: usize) -> usize {
    p.streams[0]
        .words
        .iter()
        .enumerate()
        .flat_map(|(w, word)| word.slots.iter().map(move |op| (w, op.code)))
        .filter(|&(_, c)| c == code)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {} #{nth}", code.name()))
        .0
}

/// Unpacked and `p` leave bit-identical pages on the reference executor, and `p`
/// runs fewer words.
fn same_pages_as(unpacked: &Program, p: &Program, what: &str) {
    let (ru, pu) = common::run(unpacked, 1, ExecutorKind::Reference);
    let (rp, pp) = common::run(p, 1, ExecutorKind::Reference);
    common::same_pages(&pu, &pp, what);
    let (wu, wp) = (ru.total().siws, rp.total().siws);
    assert!(wp < wu, "{what}: packed ran {wp} words, unpacked {wu}");
}

/// `a` after a chain of D ops, so the op that reads it is ready late.
fn slow(s: &mut vtpu_compiler::SentronGraph, mut a: Value, steps: usize) -> Value {
    for _ in 0..steps {
        a = s.tbin(Opcode::DTAdd, a, a).expect("DTADD");
    }
    a
}

/// P (4x8) is read by `DTMM y, a, w` through `w` (a window onto P when `window`, else
/// an SGATHERV copy of it, passed through DMOV when `forward`), then overwritten by
/// a scatter of Q; y goes to O. `a` is ready late, the scatter early.
fn block_graph(window: bool, forward: bool) -> Graph {
    let mut g = Graph::new();
    page(&mut g, P, 4, 8, 0.0);
    page(&mut g, Q, 4, 8, 1.0);
    page(&mut g, A, 2, 8, 2.0);
    page(&mut g, O, 2, 4, 3.0);
    let s = g.sentron(0).expect("sentron 0");
    let (cp, cq, ca, co) = (
        s.scli(coord(P)).unwrap(),
        s.scli(coord(Q)).unwrap(),
        s.scli(coord(A)).unwrap(),
        s.scli(coord(O)).unwrap(),
    );
    let zero = s.li(0).unwrap();
    let four = s.li(4).unwrap();
    let open = if window {
        Opcode::SWindow
    } else {
        Opcode::SGatherV
    };
    let mut w = s
        .op(open, &[Arg::V(cp), Arg::V(zero), Arg::V(four), Arg::I64(8)])
        .unwrap()[0];
    if forward {
        w = s.op(Opcode::DMov, &[Arg::V(w)]).unwrap()[0];
    }
    let a = s.gathers(ca, zero, 2, 8).unwrap();
    let a = slow(s, a, 8);
    let y = s.op(Opcode::DTMm, &[Arg::V(a), Arg::V(w)]).unwrap()[0];
    let fresh = s.gathers(cq, zero, 4, 8).unwrap();
    s.scatter(fresh, cp, zero).unwrap();
    s.scatter(y, co, zero).unwrap();
    g
}

fn check_block(forward: bool) {
    let g = block_graph(true, forward);
    let un = compile(&g, &CompileOptions::unpacked()).expect("unpacked");
    let pk = compile(&g, &CompileOptions::packed()).expect("packed");
    let (mm, sc) = (
        word_of(&pk.program, Opcode::DTMm, 0),
        word_of(&pk.program, Opcode::SScatter, 0),
    );
    assert!(
        mm < sc,
        "forward {forward}: DTMM (word {mm}) must read P before the scatter (word {sc}) overwrites it:\n{}",
        vtpu_isa::disassemble(&pk.program)
    );
    same_pages_as(&un.program, &pk.program, &format!("forward {forward}"));
    assert!(vtpu_isa::validate::dead_ops(&pk.program).is_empty());
}

#[test]
fn a_window_read_stays_before_a_later_scatter_to_its_page() {
    check_block(false);
}

#[test]
fn a_window_passed_through_dmov_is_still_a_read_of_its_page() {
    check_block(true);
}

#[test]
fn control_a_copy_lets_the_scatter_move_above_the_dtmm() {
    // The same graph with an SGATHERV copy instead of a window: nothing orders the
    // scatter after the DTMM, and the scheduler does place it earlier. This is what
    // the window test would do without the window read (so that test can fail).
    let g = block_graph(false, false);
    let un = compile(&g, &CompileOptions::unpacked()).expect("unpacked");
    let pk = compile(&g, &CompileOptions::packed()).expect("packed");
    let (mm, sc) = (
        word_of(&pk.program, Opcode::DTMm, 0),
        word_of(&pk.program, Opcode::SScatter, 0),
    );
    assert!(
        sc < mm,
        "the scatter (word {sc}) is expected above the DTMM (word {mm}):\n{}",
        vtpu_isa::disassemble(&pk.program)
    );
    same_pages_as(&un.program, &pk.program, "copy");
}

/// A loop of `trips` iterations: before it, `w` = window onto P (k x n = 4 x 8); each
/// iteration `y = DTMMN(a_i, w)` (a_i: 2 x 4 from A) goes to O, then P is overwritten
/// by 32 elements of Q (all at one carried offset that advances 32 elements). So
/// iteration i reads what iteration i-1 wrote: a scatter hoisted above the DTMMN of its
/// own iteration, or a DTMMN of the next iteration hoisted above it, changes O.
fn loop_graph(trips: u32) -> Graph {
    let mut g = Graph::new();
    page(&mut g, P, 4, 8, 0.0);
    page(&mut g, Q, 4 * trips, 8, 1.0);
    page(&mut g, A, 4 * trips, 8, 2.0);
    page(&mut g, O, 4 * trips, 8, 3.0);
    let s = g.sentron(0).expect("sentron 0");
    let (cp, cq, ca, co) = (
        s.scli(coord(P)).unwrap(),
        s.scli(coord(Q)).unwrap(),
        s.scli(coord(A)).unwrap(),
        s.scli(coord(O)).unwrap(),
    );
    let zero = s.li(0).unwrap();
    let four = s.li(4).unwrap();
    let w = s
        .op(
            Opcode::SWindow,
            &[Arg::V(cp), Arg::V(zero), Arg::V(four), Arg::I64(8)],
        )
        .unwrap()[0];
    let off0 = s.li(0).unwrap();
    s.begin_loop(u64::from(trips)).unwrap();
    let off = s.carried(off0).unwrap();
    let a = s.gathers(ca, off, 2, 4).unwrap();
    let a = slow(s, a, 2);
    let y = s.op(Opcode::DTMmN, &[Arg::V(a), Arg::V(w)]).unwrap()[0];
    s.scatter(y, co, off).unwrap();
    let fresh = s.gathers(cq, off, 4, 8).unwrap();
    s.scatter(fresh, cp, zero).unwrap();
    let next = s.addi(off, 32).unwrap();
    s.set_next(off, next).unwrap();
    s.end_loop().unwrap();
    g
}

#[test]
fn window_reads_in_a_pipelined_loop_keep_their_order_with_the_scatters() {
    let trips = 6;
    let g = loop_graph(trips);
    let un = compile(&g, &CompileOptions::unpacked()).expect("unpacked");
    let pk = compile(&g, &CompileOptions::packed()).expect("packed");
    let l = &pk.streams[0].loops[0];
    assert!(
        l.pipelined && l.ii < l.body_ops as u32,
        "overlapped iterations: {l:?}"
    );
    // Every iteration's y depends on what the previous iteration scattered to P.
    same_pages_as(&un.program, &pk.program, "loop");
}

/// The window program as assembly: `split` goes right after the SWINDOW, `prefix`
/// before everything.
fn window_vasm(prefix: &str, split: &str) -> Program {
    let src = format!(
        "
.page 1.1.1/1.1.1/1.1.1 f32 4x8 = 0.5, -1, 2, 0.25, 3, 1, -2, 0.75, 1.5, -0.5, 1, 2, -1, 0.5, 0.25, -3, 2, 1, 0.5, -1, 0.75, 1.25, -0.25, 1, 3, -2, 1, 0.5, -0.75, 2, 1, -1
.page 1.1.1/1.1.1/1.1.2 f32 4x8 = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32
.page 1.1.1/1.1.1/1.1.3 f32 2x8 = 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8
.page 1.1.1/1.1.1/1.1.4 f32 2x4
{prefix}
    SCLI c0, 1.1.1/1.1.1/1.1.1
    SCLI c1, 1.1.1/1.1.1/1.1.2
    SCLI c2, 1.1.1/1.1.1/1.1.3
    SCLI c3, 1.1.1/1.1.1/1.1.4
    DLI r0, 0
    DLI r1, 4
    SGATHERS t1, c2, r0, 2x8
    SWINDOW t0, c0, r0, r1, 8
{split}
    DTADD t1, t1, t1
    DTADD t1, t1, t1
    DTADD t1, t1, t1
    DTADD t1, t1, t1
    DTADD t1, t1, t1
    DTADD t1, t1, t1
    DTMM t2, t1, t0
    SGATHERV t3, c1, r0, r1, 8
    SSCATTR t3, c0, r0
    SSCATTR t2, c3, r0
    CHALT
"
    );
    vtpu_isa::assemble_file("window.vasm", &src).expect("assembles")
}

/// Compile `p` through the assembly frontend; check the path it took, the order of the
/// DTMM and the scatter to its page, and the pages.
fn check_vasm(p: &Program, frontend: &str) {
    let c = compile_program(p, &CompileOptions::packed()).expect("compiles");
    assert!(
        c.streams[0].frontend.starts_with(frontend),
        "{}",
        c.streams[0].frontend
    );
    let (mm, sc) = (
        word_of(&c.program, Opcode::DTMm, 0),
        word_of(&c.program, Opcode::SScatter, 0),
    );
    assert!(
        mm < sc,
        "{frontend}: DTMM (word {mm}) before the scatter to its page (word {sc}):\n{}",
        vtpu_isa::disassemble(&c.program)
    );
    same_pages_as(p, &c.program, frontend);
}

#[test]
fn renamed_assembly_orders_window_reads() {
    check_vasm(&window_vasm("", ""), "vasm, renamed");
}

#[test]
fn in_place_assembly_orders_window_reads_in_one_block() {
    // A branch first makes the stream in place; the rest is one block, so the window's
    // page is known.
    check_vasm(&window_vasm("    CJMP start\nstart:", ""), "vasm, in place");
}

#[test]
fn in_place_assembly_orders_reads_of_windows_from_another_block() {
    // The block split right after the SWINDOW: the DTMM's register comes from another
    // block, so it may be a window onto any page.
    check_vasm(&window_vasm("", "    CJMP next\nnext:"), "vasm, in place");
}
