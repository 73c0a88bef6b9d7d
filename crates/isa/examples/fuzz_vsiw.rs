//! Structure-aware fuzzing of the `.vsiw` decoder (`decode_program`).
//!
//! Seeds: the repository's `.vasm` programs assembled, and random well-formed programs
//! built from the op table. Each input is a seed changed either at the program level
//! (an op replaced, words duplicated or dropped, a stream retargeted to sentron 64 or
//! 2^32 - 1, a page's shape, dtype or init values changed) and then encoded, or at the
//! byte level (bits, bytes, counts overwritten with boundary numbers, cuts, splices),
//! and then, nine times in ten, re-sealed with a matching length and checksum so the
//! body parser sees the damage. Properties:
//! - never a panic;
//! - bytes changed and not re-sealed are always refused (the checksum);
//! - an accepted program re-encodes to exactly the input, and `encoded_len` agrees;
//! - the assembler, validator and decoder agree on the limits: an accepted program
//!   draws no page, stream or sentron-id limit error from the validator, and its
//!   disassembly assembles back to it whenever it is valid.
//!
//! `cargo run --release -p vtpu-isa --example fuzz_vsiw -- --inputs 1000000`

#[path = "fuzz_isa/mod.rs"]
mod fuzz_isa;
#[path = "../../phext/examples/fuzz_support/mod.rs"]
pub mod fuzz_support;

use fuzz_support::{drive, mutate_bytes, Options, Outcome, Rng};
use vtpu_isa::encode::{encoded_len, seal};
use vtpu_isa::validate::Site;
use vtpu_isa::{
    assemble, decode_program, disassemble, encode_program, validate, Pipe, Program, ValidateOptions,
};

pub struct Input {
    pub bytes: Vec<u8>,
    /// The bytes were changed after encoding and not re-sealed: must be refused.
    pub unsealed_damage: bool,
}

pub fn seeds() -> Vec<Program> {
    let mut v: Vec<Program> = fuzz_isa::repo_sources()
        .iter()
        .filter_map(|t| assemble(t).ok())
        .collect();
    let mut rng = Rng::new(99);
    v.extend((0..64).map(|_| fuzz_isa::program(&mut rng)));
    v
}

fn mutate_program(rng: &mut Rng, p: &mut Program) {
    match rng.below(6) {
        0 => {
            if let Some(s) = p.streams.iter_mut().find(|s| !s.words.is_empty()) {
                let n = s.words.len();
                let w = rng.below(n);
                let pipe = *rng.pick(&Pipe::ALL);
                s.words[w].slots[pipe as usize] = fuzz_isa::op(rng, pipe, n);
            }
        }
        1 => {
            if let Some(s) = p.streams.first_mut() {
                if !s.words.is_empty() {
                    let at = rng.below(s.words.len());
                    if rng.chance(1, 2) {
                        let w = s.words[at];
                        s.words.insert(at, w);
                    } else {
                        s.words.remove(at);
                    }
                }
            }
        }
        2 => {
            if !p.streams.is_empty() {
                let i = rng.below(p.streams.len());
                let any = rng.next_u64() as u32;
                p.streams[i].sentron =
                    *rng.pick(&[None, Some(0), Some(63), Some(64), Some(u32::MAX), Some(any)]);
            }
        }
        3 if p.pages.is_empty() => p.pages.push(fuzz_isa::page(rng)),
        3 => {
            let i = rng.below(p.pages.len());
            let d = |rng: &mut Rng| {
                *rng.pick(&[
                    0u32,
                    1,
                    2,
                    1 << 15,
                    1 << 16,
                    1 << 24,
                    (1 << 24) + 1,
                    u32::MAX,
                ])
            };
            p.pages[i].shape = [d(rng), d(rng)];
        }
        4 => {
            if !p.pages.is_empty() {
                let i = rng.below(p.pages.len());
                p.pages[i].init = vtpu_isa::PageInitData::F32(vec![1.0; rng.below(40)]);
                p.pages[i].dtype = *rng.pick(&vtpu_phext::DType::ALL);
            }
        }
        _ => {
            p.pages.push(fuzz_isa::page(rng));
        }
    }
}

pub fn make(seeds: &[Program]) -> impl FnMut(&mut Rng) -> Input + '_ {
    move |rng| {
        let mut p = rng.pick(seeds).clone();
        if rng.chance(1, 3) {
            for _ in 0..1 + rng.below(2) {
                mutate_program(rng, &mut p);
            }
            return Input {
                bytes: encode_program(&p),
                unsealed_damage: false,
            };
        }
        let original = encode_program(&p);
        let mut b = original.clone();
        for _ in 0..1 + rng.below(3) {
            if rng.chance(1, 3) && b.len() >= 8 {
                // A count, target or shape: overwrite an aligned 8-byte field.
                let at = rng.below(b.len() / 8) * 8;
                b[at..at + 8].copy_from_slice(&rng.interesting_u64().to_le_bytes());
            } else {
                mutate_bytes(rng, &mut b);
            }
        }
        let reseal = rng.chance(9, 10);
        if reseal {
            seal(&mut b);
        }
        Input {
            unsealed_damage: !reseal && b != original,
            bytes: b,
        }
    }
}

pub fn check(input: &Input) -> Outcome {
    let decoded = decode_program(&input.bytes);
    let p = match decoded {
        Err(_) => return Outcome::Rejected,
        Ok(_) if input.unsealed_damage => {
            return Outcome::Violation("damaged bytes decoded without a re-seal".into())
        }
        Ok(p) => p,
    };
    if encode_program(&p) != input.bytes {
        return Outcome::Violation("accepted bytes do not re-encode to themselves".into());
    }
    if encoded_len(&p) != input.bytes.len() as u64 {
        return Outcome::Violation("encoded_len disagrees with the encoding".into());
    }
    let valid = match validate(&p, &ValidateOptions::default()) {
        Ok(()) => true,
        Err(errs) => {
            for e in &errs {
                let container = matches!(
                    e.site,
                    Site::Page { .. } | Site::Program | Site::Stream { .. }
                );
                let limit = e.message.contains("than the limit")
                    || e.message.contains("MAX_SENTRONS")
                    || e.message.contains("each dimension must be");
                if container && limit {
                    return Outcome::Violation(format!(
                        "decoder accepted what the validator refuses: {e}"
                    ));
                }
            }
            false
        }
    };
    if valid {
        match assemble(&disassemble(&p)) {
            Ok(q) if q == p => {}
            Ok(_) => return Outcome::Violation("disassembly assembles to another program".into()),
            Err(e) => {
                return Outcome::Violation(format!("valid program's disassembly refused: {e}"))
            }
        }
    }
    Outcome::Accepted
}

pub fn run(inputs: u64, seed: u64, crashes: Option<&std::path::Path>) -> fuzz_support::Stats {
    let seeds = seeds();
    drive(
        "vsiw",
        "vsiw",
        inputs,
        seed,
        crashes,
        make(&seeds),
        check,
        |i| i.bytes.clone(),
    )
}

#[allow(dead_code)]
fn main() {
    let o = match Options::from_args(1_000_000) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz_vsiw: {e}");
            std::process::exit(2);
        }
    };
    let st = run(o.inputs, o.seed, o.crashes.as_deref());
    println!("{}", st.summary("vsiw"));
    for f in &st.findings {
        println!("  {f}");
    }
    if !st.findings.is_empty() {
        std::process::exit(1);
    }
}
