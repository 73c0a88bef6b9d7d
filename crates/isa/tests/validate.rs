//! The validator: every rule fires, errors are all collected, and each names where it is.

use vtpu_isa::word::{GROUP_ALL, KIND_MAPPED};
use vtpu_isa::{
    assemble, validate, Op, Opcode, PageDecl, PageInitData, Program, Siw, Stream, ValidateOptions,
};
use vtpu_phext::{Coord, DType, PageKind};

fn errors(p: &Program, sentrons: Option<usize>) -> Vec<String> {
    let opts = ValidateOptions {
        sentrons,
        ..ValidateOptions::default()
    };
    match validate(p, &opts) {
        Ok(()) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

#[track_caller]
fn expect(src: &str, sentrons: Option<usize>, want: &[&str]) {
    let p = assemble(src).unwrap_or_else(|e| panic!("{e}"));
    let got = errors(&p, sentrons);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.contains(w), "{g:?} should contain {w:?}");
    }
}

fn spmd(words: Vec<Siw>) -> Program {
    Program {
        pages: vec![],
        streams: vec![Stream {
            sentron: None,
            words,
        }],
    }
}

fn word(op: Op) -> Siw {
    Siw::from_ops(&[op]).unwrap()
}

#[test]
fn valid_programs_pass() {
    expect(
        "DLI r1, 1 | SCLI c0, 1.1.1/1.1.1/1.1.1 | CHALT",
        Some(1),
        &[],
    );
}

#[test]
fn one_writer_per_register_per_word() {
    expect(
        "DLI r1, 1 | CRECV r1, @0\nDTZERO t2, 1x1 | SGATHER t2, c0 | CRECV t2, @0",
        None,
        &[
            "stream 0 (spmd), word 0: DLI and CRECV both write r1 in one word",
            "stream 0 (spmd), word 1: DTZERO and SGATHER both write t2 in one word",
        ],
    );
    // Reading and writing one register in one word is fine: reads see the old value.
    expect("DADD r1, r1, r2 | CLOOP r2, top\ntop: CHALT", None, &[]);
}

#[test]
fn branch_targets_inside_the_stream() {
    expect(
        ".sentron 0\n  CJMP end\n  CHALT\nend:\n",
        None,
        &["stream 0 (sentron 0), word 0, C slot (CJMP): operand 1: branch target 2 is outside the stream (words 0..2)"],
    );
}

#[test]
fn sentrons_and_groups_against_the_machine() {
    let src = ".sentron 0\n CSEND @5, r0\n CBAR {0,3}\n CREDUCE t0, sum, all\n.sentron 2\n CHALT";
    expect(src, None, &[]);
    expect(
        src,
        Some(2),
        &[
            "word 0, C slot (CSEND): operand 1: sentron 5 is not below the machine's 2 sentrons",
            "word 1, C slot (CBAR): operand 1: group member sentron 3 is not below the machine's 2 sentrons",
            "stream 1 (sentron 2): sentron id 2 is not below the machine's 2 sentrons",
        ],
    );
}

#[test]
fn coordinates_within_the_part_limit() {
    let src = ".page 1.1.1/1.1.1/1.1.1000 f32 1x1\nSCLI c0, 1.1.1/1.1.1/1.1.1000";
    expect(
        src,
        None,
        &[
            "page 0 at 1.1.1/1.1.1/1.1.1000: coordinate 1.1.1/1.1.1/1.1.1000 has a part 1000 above the part limit 999",
            "word 0, S slot (SCLI): operand 2: coordinate 1.1.1/1.1.1/1.1.1000 has a part 1000",
        ],
    );
    let p = assemble(src).unwrap();
    let wide = ValidateOptions {
        sentrons: None,
        part_limit: 16383,
    };
    assert_eq!(validate(&p, &wide), Ok(()));
}

#[test]
fn page_declarations() {
    expect(
        ".page 1.1.1/1.1.1/1.1.1 f32 1x1\n.page 1.1.1/1.1.1/1.1.1 f32 1x1\n.page 1.1.1/1.1.1/1.1.2 q4_0 1x31\nCHALT",
        None,
        &[
            "page 1 at 1.1.1/1.1.1/1.1.1: duplicate page: page 0 is already declared",
            "page 2 at 1.1.1/1.1.1/1.1.2: shape 1x31: 31 elements of q4_0 is not a whole number of blocks of 32",
        ],
    );
    let page = |dtype, shape: [u32; 2], kind, init| PageDecl {
        coord: Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 2]).unwrap(),
        dtype,
        shape,
        kind,
        read_only: false,
        init,
    };
    let mut p = spmd(vec![Siw::NOP]);
    p.pages = vec![page(
        DType::BF16,
        [1, 2],
        PageKind::Mapped,
        PageInitData::F32(vec![1.0]),
    )];
    let got = errors(&p, None);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].contains("cannot declare a mapped page"));
    assert!(got[1].contains("f32 initial values on a bf16 page"));
    assert!(got[2].contains("1 initial values for a 1x2 page, expected 2"));
    p.pages = vec![page(
        DType::F32,
        [0, 1 << 30],
        PageKind::Owned,
        PageInitData::Zero,
    )];
    let got = errors(&p, None);
    assert!(
        got[0].contains("shape 0x1073741824: each dimension must be 1..=16777216"),
        "{got:#?}"
    );
}

#[test]
fn out_of_range_operands_from_a_decoder() {
    let ops = [
        (
            Op::new(Opcode::DMov, [200, 3, 0, 0], 0),
            "D slot (DMOV): operand 1: register t200 is out of range t0..t15",
        ),
        (
            Op::new(Opcode::SIndexi, [0, 0, 9, 0], 0),
            "S slot (SINDEXI): operand 3: dimension 9 is not 0..8",
        ),
        (
            Op::new(Opcode::SAlloc, [0, 99, 0, 0], Op::encode_shape(1, 1)),
            "operand 2: unknown dtype code 99",
        ),
        (
            Op::new(
                Opcode::SAlloc,
                [0, 0, KIND_MAPPED, 0],
                Op::encode_shape(1, 1),
            ),
            "operand 3: page kind code 2",
        ),
        (
            Op::new(Opcode::CReduce, [0, 3, 0, 0], GROUP_ALL as u128),
            "operand 2: unknown reduction code 3",
        ),
        (
            Op::new(Opcode::CSendR, [64, 0, 0, 0], 0),
            "operand 1: sentron 64 is not below MAX_SENTRONS (64)",
        ),
        (
            Op::new(Opcode::CBar, [0; 4], 0),
            "operand 1: the group is empty",
        ),
        (
            Op::new(Opcode::DTZero, [0; 4], Op::encode_shape(0, 4)),
            "operand 2: shape 0x4",
        ),
        (
            Op::new(Opcode::SCli, [0; 4], u128::MAX),
            "operand 2: coordinate key",
        ),
    ];
    for (op, want) in ops {
        let got = errors(&spmd(vec![word(op)]), None);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains(want),
            "{:?} should contain {want:?}",
            got[0]
        );
    }
}

#[test]
fn streams() {
    assert_eq!(
        errors(&Program::default(), None),
        ["program: the program has no stream to run"]
    );
    let s = |sentron| Stream {
        sentron,
        words: vec![Siw::NOP],
    };
    let p = Program {
        pages: vec![],
        streams: vec![s(None), s(Some(1)), s(None), s(Some(1)), s(Some(70))],
    };
    let got = errors(&p, None);
    assert_eq!(
        got,
        [
            "stream 2 (spmd): stream 0 already serves the same sentron(s)",
            "stream 3 (sentron 1): stream 1 already serves the same sentron(s)",
            "stream 4 (sentron 70): sentron id 70 is not below MAX_SENTRONS (64)",
        ]
    );
}

#[test]
fn all_errors_are_collected() {
    let p = assemble("DMOV t1, t2 | SGATHER t1, c0 | CBAR {9}\nCJMP nowhere_yet\nnowhere_yet:\nDLI r0, 1 | CRECV r0, @9\n")
        .unwrap();
    let got = errors(&p, Some(4));
    assert_eq!(got.len(), 4, "{got:#?}");
}

#[test]
fn huge_shapes_are_rejected_before_anything_allocates() {
    expect(
        "DTZERO t0, 16777216x16777216",
        None,
        &["shape 16777216x16777216 has 281474976710656 elements, more than the limit 67108864"],
    );
    expect(
        "DTSPLAT t0, r0, 65536x1025",
        None,
        &["more than the limit 67108864"],
    );
    expect(
        "SALLOC c0, f32, owned, 65536x16385",
        None,
        &["more than the limit 1073741824"],
    );
    expect("SALLOC c0, f32, scratch, 65536x16384", None, &[]);
    // A page beyond the limit: the assembler refuses it (as the decoder does), and the
    // validator still catches one built in memory.
    let e = assemble(".page 1.1.1/1.1.1/1.1.1 f32 65536x16385\nCHALT").unwrap_err();
    assert!(
        e.to_string().contains("more than the limit 1073741824"),
        "{e}"
    );
    let mut p = spmd(vec![Siw::NOP]);
    p.pages.push(PageDecl {
        coord: Coord::ORIGIN,
        dtype: DType::F32,
        shape: [65536, 16385],
        kind: PageKind::Owned,
        read_only: false,
        init: PageInitData::Zero,
    });
    let got = errors(&p, None);
    assert!(
        got.iter()
            .any(|g| g.contains("more than the limit 1073741824")),
        "{got:?}"
    );
}
