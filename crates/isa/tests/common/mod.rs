//! Shared test support: table-driven proptest generators of VALID programs, the
//! repository root, and the bless switch.
#![allow(dead_code)]

use std::path::PathBuf;

use proptest::prelude::*;
use vtpu_isa::validate::writes;
use vtpu_isa::word::{GROUP_ALL, KIND_OWNED, KIND_SCRATCH, REDUCE_NAMES};
use vtpu_isa::{
    Op, Opcode, Operand, PageDecl, PageInitData, Pipe, Program, Siw, Stream, MAX_TILE_DIM,
    MAX_TILE_ELEMS, OPS,
};
use vtpu_phext::{Coord, DType, PageKind, DIM_NAMES};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `VTPU_BLESS=1` rewrites golden files instead of comparing against them.
pub fn bless() -> bool {
    std::env::var("VTPU_BLESS").is_ok_and(|v| v == "1")
}

/// Proptest settings with `cases` cases; failures are saved next to the test file
/// (`tests/<name>.proptest-regressions`) and replayed first on the next run.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

/// A valid coordinate with parts 1..=999.
pub fn arb_coord() -> impl Strategy<Value = Coord> {
    prop::array::uniform9(prop_oneof![3 => 1u32..=3, 1 => 1u32..=999])
        .prop_map(|parts| Coord::new(parts).expect("parts are 1..=999"))
}

/// One operand value of `kind` for a machine of `sentrons` sentrons: (small, big).
/// Labels are raw u32s, reduced modulo the stream length once it is known.
fn arb_operand(kind: Operand, sentrons: usize) -> BoxedStrategy<(Option<u8>, Option<u128>)> {
    let small = |s: BoxedStrategy<u8>| s.prop_map(|a| (Some(a), None)).boxed();
    let big = |s: BoxedStrategy<u128>| s.prop_map(|i| (None, Some(i))).boxed();
    if let Some(file) = kind.reg_file() {
        return small((0..file.count() as u8).boxed());
    }
    match kind {
        Operand::Dim => small((0..DIM_NAMES.len() as u8).boxed()),
        Operand::DType => {
            small(prop::sample::select(DType::ALL.map(|d| d.code()).to_vec()).boxed())
        }
        Operand::Kind => small(prop::sample::select(vec![KIND_OWNED, KIND_SCRATCH]).boxed()),
        Operand::Sentron => small((0..sentrons as u8).boxed()),
        Operand::Reduce => small((0..REDUCE_NAMES.len() as u8).boxed()),
        Operand::I64 => big(any::<i64>().prop_map(Op::encode_i64).boxed()),
        Operand::F32 => big(prop_oneof![
            any::<u32>().prop_map(f32::from_bits),
            (-1000i32..1000).prop_map(|v| v as f32 / 8.0),
        ]
        .prop_map(Op::encode_f32)
        .boxed()),
        // Either dimension may reach MAX_TILE_DIM, but the element count stays within
        // MAX_TILE_ELEMS (the validator's cap for tile shapes; pages allow more).
        Operand::Shape => big((
            prop_oneof![1u32..=64, 1u32..=MAX_TILE_DIM],
            prop_oneof![1u32..=64, 1u32..=MAX_TILE_DIM],
        )
            .prop_map(|(r, c)| {
                let c = c.min((MAX_TILE_ELEMS / u64::from(r)).max(1) as u32);
                Op::encode_shape(r, c)
            })
            .boxed()),
        Operand::CoordImm => big(arb_coord().prop_map(Op::encode_coord).boxed()),
        Operand::Group => {
            let members = if sentrons >= 64 {
                u64::MAX
            } else {
                (1u64 << sentrons) - 1
            };
            big(prop_oneof![Just(GROUP_ALL), (1..=members)]
                .prop_map(Op::encode_group)
                .boxed())
        }
        Operand::Label => big(any::<u32>().prop_map(u128::from).boxed()),
        _ => unreachable!("register kinds handled above"),
    }
}

/// A random op of `pipe`, driven by the table: any row of that pipe, operands by kind.
pub fn arb_op(pipe: Pipe, sentrons: usize) -> BoxedStrategy<Op> {
    let codes: Vec<Opcode> = OPS
        .iter()
        .filter(|i| i.pipe == pipe)
        .map(|i| i.opcode)
        .collect();
    prop::sample::select(codes)
        .prop_flat_map(move |code| {
            let operands: Vec<_> = code
                .info()
                .operands
                .iter()
                .map(|&k| arb_operand(k, sentrons))
                .collect();
            (Just(code), operands)
        })
        .prop_map(|(code, vals)| {
            let mut op = Op::new(code, [0; 4], 0);
            let mut next = 0;
            for (small, big) in vals {
                if let Some(a) = small {
                    op.args[next] = a;
                    next += 1;
                }
                if let Some(i) = big {
                    op.imm = i;
                }
            }
            op
        })
        .boxed()
}

/// A random word obeying the one-writer rule: a slot writing a register an earlier slot
/// writes becomes a NOP. Some slots are NOPs anyway, as in real code.
pub fn arb_word(sentrons: usize) -> BoxedStrategy<Siw> {
    let slot = move |pipe: Pipe| prop_oneof![1 => Just(Op::nop(pipe)), 3 => arb_op(pipe, sentrons)];
    (slot(Pipe::D), slot(Pipe::S), slot(Pipe::C))
        .prop_map(|(d, s, c)| {
            let mut w = Siw { slots: [d, s, c] };
            let mut written = Vec::new();
            for (i, pipe) in Pipe::ALL.into_iter().enumerate() {
                let regs: Vec<_> = writes(&w.slots[i]).collect();
                if regs.iter().any(|r| written.contains(r)) {
                    w.slots[i] = Op::nop(pipe);
                } else {
                    written.extend(regs);
                }
            }
            w
        })
        .boxed()
}

/// Branch targets modulo the stream length, so they land inside the stream.
fn fix_labels(words: &mut [Siw]) {
    let len = words.len() as u128;
    for w in words.iter_mut() {
        for op in w.slots.iter_mut() {
            if op.code.big_operand() == Some(Operand::Label) {
                op.imm %= len;
            }
        }
    }
}

pub fn arb_page() -> impl Strategy<Value = PageDecl> {
    (
        arb_coord(),
        prop::sample::select(DType::ALL.to_vec()),
        1u32..=4,
        1u32..=6,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::collection::vec(any::<u32>(), 24),
    )
        .prop_map(
            |(coord, dtype, rows, n, scratch, read_only, with_values, bits)| {
                let cols = n * dtype.block_elems() as u32;
                let init = if dtype == DType::F32 && with_values {
                    let len = (rows * cols) as usize;
                    PageInitData::F32(
                        bits.iter()
                            .cycle()
                            .take(len)
                            .map(|&b| f32::from_bits(b))
                            .collect(),
                    )
                } else {
                    PageInitData::Zero
                };
                PageDecl {
                    coord,
                    dtype,
                    shape: [rows, cols],
                    kind: if scratch {
                        PageKind::Scratch
                    } else {
                        PageKind::Owned
                    },
                    read_only,
                    init,
                }
            },
        )
}

/// A random valid program for a machine of the returned number of sentrons.
pub fn arb_program() -> impl Strategy<Value = (Program, usize)> {
    (1usize..=8)
        .prop_flat_map(|n| {
            let stream = move |sentron: Option<u32>| {
                prop::collection::vec(arb_word(n), 0..10).prop_map(move |mut words| {
                    fix_labels(&mut words);
                    Stream { sentron, words }
                })
            };
            let explicit: Vec<_> = (0..n as u32)
                .map(move |id| prop::option::weighted(0.6, stream(Some(id))))
                .collect();
            (
                Just(n),
                prop::option::weighted(0.5, stream(None)),
                explicit,
                prop::collection::vec(arb_page(), 0..4),
            )
        })
        .prop_flat_map(|(n, spmd, explicit, pages)| {
            let mut streams: Vec<Stream> = spmd
                .into_iter()
                .chain(explicit.into_iter().flatten())
                .collect();
            if streams.is_empty() {
                streams.push(Stream {
                    sentron: None,
                    words: vec![Siw::NOP],
                });
            }
            (Just(n), Just(streams).prop_shuffle(), Just(pages))
        })
        .prop_map(|(n, streams, mut pages)| {
            let mut seen = std::collections::HashSet::new();
            pages.retain(|p| seen.insert(p.coord));
            (Program { pages, streams }, n)
        })
}
