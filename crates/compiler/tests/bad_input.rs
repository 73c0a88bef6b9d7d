//! Bad input is a clear, typed error naming where and what, never a panic or a silent
//! miscompile: cycles, misuse of values and loops, unsatisfiable register pressure,
//! message deadlocks, limits.

use vtpu_compiler::graph::Graph;
use vtpu_compiler::{compile, compile_program, Arg, CompileError, CompileOptions};
use vtpu_isa::word::GROUP_ALL;
use vtpu_isa::{Opcode, PageDecl, PageInitData};
use vtpu_phext::{Coord, DType, PageKind};

fn both(g: &Graph) -> Vec<CompileError> {
    [CompileOptions::unpacked(), CompileOptions::packed()]
        .iter()
        .filter_map(|o| compile(g, o).err())
        .collect()
}

#[test]
fn contradicting_order_edges_are_a_cycle() {
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    let (a_node, a) = s.op_node(Opcode::DLi, &[Arg::I64(1)]).unwrap();
    let (b_node, _) = s
        .op_node(Opcode::DAddi, &[Arg::V(a[0]), Arg::I64(1)])
        .unwrap();
    s.order(b_node, a_node).unwrap();
    let errs = both(&g);
    assert_eq!(errs.len(), 2);
    for e in errs {
        assert!(matches!(e, CompileError::Cycle { .. }), "{e}");
        assert!(e.to_string().contains("DLI"), "names the ops: {e}");
    }
}

#[test]
fn structure_errors() {
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    // Control flow is structural.
    let e = s.op(Opcode::CJmp, &[]).unwrap_err();
    assert!(matches!(e, CompileError::Structure { .. }), "{e}");
    // Operand count and kinds.
    let e = s.op(Opcode::DAddi, &[Arg::I64(1)]).unwrap_err();
    assert!(matches!(e, CompileError::Arity { .. }), "{e}");
    let x = s.li(3).unwrap();
    let e = s.op(Opcode::DTAdd, &[Arg::V(x), Arg::V(x)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("scalar value, a tile value is needed"),
        "{e}"
    );
    let e = s
        .op(Opcode::SIndexi, &[Arg::V(x), Arg::Dim(9), Arg::I64(1)])
        .unwrap_err();
    assert!(
        matches!(e, CompileError::Scope { .. } | CompileError::Operand { .. }),
        "{e}"
    );
    // Loops: trip 0, nesting, a carried value without a next value.
    assert!(matches!(
        s.begin_loop(0).unwrap_err(),
        CompileError::TooLarge { .. }
    ));
    s.begin_loop(3).unwrap();
    assert!(matches!(
        s.begin_loop(2).unwrap_err(),
        CompileError::Structure { .. }
    ));
    let _c = s.carried(x).unwrap();
    let inner = s.addi(x, 1).unwrap();
    let e = s.end_loop().unwrap_err();
    assert!(e.to_string().contains("no next value"), "{e}");
    // A body value is not visible after the loop, only through loop_output.
    let mut g2 = Graph::new();
    let s2 = g2.sentron(0).unwrap();
    let y = s2.li(1).unwrap();
    s2.begin_loop(2).unwrap();
    let b = s2.addi(y, 1).unwrap();
    let l = s2.end_loop().unwrap();
    let e = s2.addi(b, 1).unwrap_err();
    assert!(matches!(e, CompileError::Scope { .. }), "{e}");
    assert!(s2.loop_output(l, b).is_ok());
    let _ = inner;
    // Sentron ids are bounded.
    assert!(matches!(
        Graph::new().sentron(64).unwrap_err(),
        CompileError::TooLarge { .. }
    ));
}

#[test]
fn in_place_misuse() {
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    let acc = s.tzero(1, 4).unwrap();
    let a = s.tzero(1, 8).unwrap();
    let w = s.tzero(4, 8).unwrap();
    let _acc2 = s.matmul(acc, a, w).unwrap();
    // acc's register now holds acc2.
    let e = s.tbin(Opcode::DTAdd, acc, acc).unwrap_err();
    assert!(matches!(e, CompileError::UseAfterInPlace { .. }), "{e}");
    // Overwriting a loop-invariant value in place would change it for later iterations.
    s.begin_loop(4).unwrap();
    let e = s.matmul(w, a, w).unwrap_err();
    assert!(e.to_string().contains("carried value"), "{e}");
}

fn page(g: &mut Graph, c: Coord, rows: u32, cols: u32) {
    g.page(PageDecl {
        coord: c,
        dtype: DType::F32,
        shape: [rows, cols],
        kind: PageKind::Owned,
        read_only: true,
        init: PageInitData::F32(vec![1.0; (rows * cols) as usize]),
    });
}

#[test]
fn unsatisfiable_register_pressure() {
    // 17 tiles gathered before a loop and all read inside it: 17 registers at once.
    let mut g = Graph::new();
    let c = Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 1]).unwrap();
    page(&mut g, c, 17, 4);
    let s = g.sentron(0).unwrap();
    let cv = s.scli(c).unwrap();
    let mut tiles = Vec::new();
    for i in 0..17 {
        let off = s.li(4 * i).unwrap();
        tiles.push(s.gathers(cv, off, 1, 4).unwrap());
    }
    let zero = s.tzero(1, 4).unwrap();
    s.begin_loop(3).unwrap();
    let acc = s.carried(zero).unwrap();
    let mut x = acc;
    for &t in &tiles {
        x = s.tbin(Opcode::DTAdd, x, t).unwrap();
    }
    s.set_next(acc, x).unwrap();
    s.end_loop().unwrap();
    for e in both(&g) {
        match e {
            CompileError::RegisterPressure {
                needed,
                available,
                file,
                ..
            } => {
                assert_eq!((file, available), ("tile", 16));
                assert!(needed > 16);
            }
            other => panic!("expected register pressure, got {other}"),
        }
    }
}

#[test]
fn message_deadlocks() {
    // Both sentrons receive first.
    let mut g = Graph::new();
    for (me, other) in [(0, 1), (1, 0)] {
        let s = g.sentron(me).unwrap();
        let x = s.recv_scalar(other).unwrap();
        s.send_scalar(other, x).unwrap();
    }
    let e = compile(&g, &CompileOptions::packed()).unwrap_err();
    assert!(matches!(e, CompileError::Deadlock(_)), "{e}");
    assert!(
        e.to_string().contains("waits for a message from sentron 1"),
        "{e}"
    );
    // Members entering different collectives.
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    s.barrier(GROUP_ALL).unwrap();
    let s = g.sentron(1).unwrap();
    let t = s.tzero(1, 1).unwrap();
    s.reduce(t, 0, GROUP_ALL).unwrap();
    let e = compile(&g, &CompileOptions::packed()).unwrap_err();
    assert!(
        e.to_string().contains("CREDUCE") || e.to_string().contains("CBAR"),
        "{e}"
    );
    // A send in a loop matched by receives in a loop of a different trip count.
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    let v = s.li(1).unwrap();
    s.begin_loop(3).unwrap();
    s.send_scalar(1, v).unwrap();
    s.end_loop().unwrap();
    let s = g.sentron(1).unwrap();
    s.begin_loop(4).unwrap();
    let r = s.recv_scalar(0).unwrap();
    let _ = s.addi(r, 0).unwrap();
    s.end_loop().unwrap();
    assert!(matches!(
        compile(&g, &CompileOptions::packed()).unwrap_err(),
        CompileError::Deadlock(_)
    ));
}

#[test]
fn an_open_loop_is_reported() {
    let mut g = Graph::new();
    let s = g.sentron(0).unwrap();
    s.begin_loop(2).unwrap();
    let _ = s.li(1).unwrap();
    let e = compile(&g, &CompileOptions::packed()).unwrap_err();
    assert!(e.to_string().contains("still open"), "{e}");
}

#[test]
fn invalid_programs_are_rejected_before_compiling() {
    let mut p = vtpu_isa::assemble("l:\n DLI r0, 1\n CJMP l\n").unwrap();
    p.streams[0].words[1].slots[2].imm = vtpu_isa::Op::encode_label(99);
    let e = compile_program(&p, &CompileOptions::packed()).unwrap_err();
    assert!(matches!(e, CompileError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("branch target 99"), "{e}");
}
