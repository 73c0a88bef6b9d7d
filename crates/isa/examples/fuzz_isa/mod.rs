//! Program generation and the seed corpus shared by the ISA fuzz targets
//! (`fuzz_vsiw.rs`, `fuzz_vasm.rs`) and their short versions in the tests.
#![allow(dead_code)]

use super::fuzz_support::Rng;
use std::path::Path;
use vtpu_isa::{
    Op, Opcode, Operand, PageDecl, PageInitData, Pipe, Program, RegFile, Siw, Stream, OPS,
};
use vtpu_phext::{Coord, DType, PageKind};

/// A small-operand value: mostly in range for its kind, sometimes just past it.
fn small(rng: &mut Rng, kind: Operand) -> u8 {
    let max = match kind.reg_file() {
        Some(RegFile::Scalar) => 32,
        Some(RegFile::Tile) | Some(RegFile::Coord) => 16,
        None => match kind {
            Operand::Dim => 9,
            Operand::DType => 12,
            Operand::Kind => 3,
            Operand::Sentron => 64,
            Operand::Reduce => 2,
            _ => 4,
        },
    };
    if rng.chance(1, 20) {
        rng.next_u64() as u8
    } else {
        rng.below(max + 1) as u8
    }
}

fn coord(rng: &mut Rng) -> Coord {
    let parts = std::array::from_fn(|_| {
        if rng.chance(3, 4) {
            1
        } else {
            1 + rng.below(999) as u32
        }
    });
    Coord::new(parts).unwrap_or(Coord::ORIGIN)
}

/// A big-operand value for `kind`, in canonical form (only its `imm_bits`).
fn big(rng: &mut Rng, kind: Operand, words: usize) -> u128 {
    let v = match kind {
        Operand::I64 => Op::encode_i64(rng.interesting_u64() as i64),
        Operand::F32 => {
            Op::encode_f32(*rng.pick(&[0.0, 1.0, -1.5, f32::NAN, f32::INFINITY, 1e-30]))
        }
        Operand::Shape => {
            let d = |rng: &mut Rng| match rng.below(4) {
                0 => 1 + rng.below(8) as u32,
                1 => 1 << rng.below(25),
                2 => rng.next_u64() as u32,
                _ => 16,
            };
            Op::encode_shape(d(rng), d(rng))
        }
        Operand::CoordImm => Op::encode_coord(coord(rng)),
        Operand::Group => Op::encode_group(if rng.chance(1, 2) {
            u64::MAX
        } else {
            rng.next_u64() & 0xf
        }),
        Operand::Label => Op::encode_label(rng.below(words + 2) as u32),
        _ => 0,
    };
    let bits = kind.imm_bits();
    if bits == 0 {
        0
    } else if bits < 128 {
        v & ((1u128 << bits) - 1)
    } else {
        v
    }
}

pub fn op(rng: &mut Rng, pipe: Pipe, words: usize) -> Op {
    if rng.chance(1, 3) {
        return Siw::NOP.slots[pipe as usize];
    }
    let codes: Vec<Opcode> = OPS
        .iter()
        .filter(|i| i.pipe == pipe)
        .map(|i| i.opcode)
        .collect();
    let code = *rng.pick(&codes);
    let mut args = [0u8; 4];
    for (a, kind) in args.iter_mut().zip(code.small_operands()) {
        *a = small(rng, kind);
    }
    let imm = code.big_operand().map_or(0, |k| big(rng, k, words));
    Op::new(code, args, imm)
}

pub fn page(rng: &mut Rng) -> PageDecl {
    let rows = 1 + rng.below(4) as u32;
    let cols = 1 + rng.below(8) as u32;
    let dtype = if rng.chance(3, 4) {
        DType::F32
    } else {
        *rng.pick(&DType::ALL)
    };
    let init = if dtype == DType::F32 && rng.chance(1, 2) {
        PageInitData::F32((0..rows * cols).map(|i| i as f32 * 0.5).collect())
    } else {
        PageInitData::Zero
    };
    PageDecl {
        coord: coord(rng),
        dtype,
        shape: [rows, cols],
        kind: if rng.chance(1, 4) {
            PageKind::Scratch
        } else {
            PageKind::Owned
        },
        read_only: rng.chance(1, 4),
        init,
    }
}

/// A random well-formed program (canonical encoding; not always valid).
pub fn program(rng: &mut Rng) -> Program {
    let pages = (0..rng.below(3)).map(|_| page(rng)).collect();
    let mut ids: Vec<Option<u32>> = vec![None, Some(0), Some(1), Some(2), Some(63)];
    let mut streams = Vec::new();
    for _ in 0..1 + rng.below(3) {
        if ids.is_empty() {
            break;
        }
        let sentron = ids.remove(rng.below(ids.len()));
        let n = rng.below(8);
        let words = (0..n)
            .map(|_| Siw {
                slots: [
                    op(rng, Pipe::D, n),
                    op(rng, Pipe::S, n),
                    op(rng, Pipe::C, n),
                ],
            })
            .collect();
        streams.push(Stream { sentron, words });
    }
    Program { pages, streams }
}

/// `.vasm` sources of the repository (examples and test programs), read at run time
/// from the crate's location: the fuzzers start from real programs too.
pub fn repo_sources() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["examples/vasm", "testdata/asm", "testdata/golden"] {
        for p in super::fuzz_support::files_in(&root.join(dir)) {
            if p.extension().is_some_and(|e| e == "vasm") {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    out.push(t);
                }
            }
        }
    }
    out
}
