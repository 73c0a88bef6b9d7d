//! Structure-aware fuzzing of the `.vasm` assembler (`assemble`).
//!
//! Seeds: the repository's `.vasm` programs and the disassembly of random well-formed
//! programs. Each input edits a seed as text with knowledge of its tokens: a token
//! replaced by a mnemonic, register, directive, coordinate, shape, boundary number or a
//! 100 000-character token; tokens or characters deleted; lines duplicated, swapped,
//! deleted; directives (`.page` with huge shapes, `.sentron 64`) inserted. Properties:
//! - never a panic;
//! - an error message stays short (an offending token is quoted by a prefix);
//! - an accepted program re-assembles from its disassembly, and its `.vsiw` encoding
//!   decodes back to it: the assembler never produces a file the decoder refuses.
//!
//! `cargo run --release -p vtpu-isa --example fuzz_vasm -- --inputs 1000000`

#[path = "fuzz_isa/mod.rs"]
mod fuzz_isa;
#[path = "../../phext/examples/fuzz_support/mod.rs"]
pub mod fuzz_support;

use fuzz_support::{drive, Options, Outcome, Rng};
use vtpu_isa::{
    assemble, decode_program, disassemble, encode_program, validate, ValidateOptions, OPS,
};

pub fn seeds() -> Vec<String> {
    let mut v = fuzz_isa::repo_sources();
    let mut rng = Rng::new(7);
    v.extend((0..64).map(|_| disassemble(&fuzz_isa::program(&mut rng))));
    v
}

const TOKENS: &[&str] = &[
    "\n",
    " ",
    ",",
    "|",
    "{",
    "}",
    "=",
    ":",
    ";",
    "#",
    ".sentron",
    ".spmd",
    ".page",
    "r0",
    "r31",
    "r32",
    "t15",
    "t16",
    "c15",
    "c16",
    "@0",
    "@63",
    "@64",
    "all",
    "sum",
    "max",
    "owned",
    "scratch",
    "readonly",
    "f32",
    "q4_k",
    "0x0",
    "1x1",
    "16777216x16777216",
    "65536x16385",
    "1.1.1/1.1.1/1.1.1",
    "999.999.999/999.999.999/999.999.999",
    "1000.1.1/1.1.1/1.1.1",
    "-1",
    "9223372036854775808",
    "nan",
    "f32:0x7fc00000",
    "L0",
    "L0:",
    "\u{e9}",
    "\t",
    "\r\n",
    "\u{0}",
];

fn token(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=2 => OPS[rng.below(OPS.len())].name.to_string(),
        3 => rng.interesting_u64().to_string(),
        4 => format!("-{}", rng.interesting_u64()),
        5 => {
            let c = *rng.pick(&['x', '9', 'r', '.', '@']);
            std::iter::repeat_n(c, 1 + rng.below(100_000)).collect()
        }
        _ => rng.pick(TOKENS).to_string(),
    }
}

fn directive(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => {
            let any = rng.interesting_u64();
            format!(".sentron {}", *rng.pick(&[0u64, 63, 64, 4294967295, any]))
        }
        1 => ".spmd".to_string(),
        2 => format!(
            ".page 1.1.{}/1.1.1/1.1.1 f32 {}x{}",
            1 + rng.below(999),
            *rng.pick(&[1u64, 2, 65536, 16777216, 16777217]),
            *rng.pick(&[1u64, 3, 16385, 16777216])
        ),
        _ => ".page 1.1.1/1.1.1/1.1.2 f32 1x2 = 1, 2".to_string(),
    }
}

/// Token boundaries of a line: (start, end) byte ranges of runs of non-separators.
fn tokens(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        let sep = c.is_whitespace() || ",|{}=".contains(c);
        match (sep, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(lines.len());
        match rng.below(8) {
            0..=2 => {
                let toks = tokens(&lines[at]);
                if let Some(&(s, e)) = (!toks.is_empty()).then(|| rng.pick(&toks)) {
                    let t = token(rng);
                    lines[at].replace_range(s..e, &t);
                } else {
                    let t = token(rng);
                    lines[at].push_str(&t);
                }
            }
            3 => {
                let toks = tokens(&lines[at]);
                if let Some(&(s, e)) = (!toks.is_empty()).then(|| rng.pick(&toks)) {
                    lines[at].replace_range(s..e, "");
                }
            }
            4 => {
                let l = lines[at].clone();
                lines.insert(rng.below(lines.len() + 1), l);
            }
            5 => {
                let b = rng.below(lines.len());
                lines.swap(at, b);
            }
            6 => {
                lines.remove(at);
                if lines.is_empty() {
                    lines.push(String::new());
                }
            }
            _ => {
                let d = directive(rng);
                lines.insert(at, d);
            }
        }
    }
    lines.join("\n")
}

pub fn make(seeds: &[String]) -> impl FnMut(&mut Rng) -> String + '_ {
    move |rng| {
        let seed = rng.pick(seeds);
        mutate(rng, seed)
    }
}

/// Longest error message any input may produce.
const MAX_MESSAGE: usize = 2000;

// `&String`: the driver hands each target `&Input`, and this target's input is a String.
#[allow(clippy::ptr_arg)]
pub fn check(text: &String) -> Outcome {
    let p = match assemble(text) {
        Ok(p) => p,
        Err(e) => {
            let m = e.to_string();
            if m.len() > MAX_MESSAGE {
                return Outcome::Violation(format!(
                    "error message of {} bytes: {}...",
                    m.len(),
                    &m[..200.min(m.len())]
                ));
            }
            return Outcome::Rejected;
        }
    };
    match assemble(&disassemble(&p)) {
        Ok(q) if q == p => {}
        Ok(_) => return Outcome::Violation("disassembly assembles to another program".into()),
        Err(e) => return Outcome::Violation(format!("canonical text refused: {e}")),
    }
    match decode_program(&encode_program(&p)) {
        Ok(q) if q == p => {}
        Ok(_) => return Outcome::Violation("encoding decodes to another program".into()),
        Err(e) => {
            return Outcome::Violation(format!("the decoder refuses what the assembler wrote: {e}"))
        }
    }
    let _ = validate(&p, &ValidateOptions::default());
    Outcome::Accepted
}

pub fn run(inputs: u64, seed: u64, crashes: Option<&std::path::Path>) -> fuzz_support::Stats {
    let seeds = seeds();
    drive(
        "vasm",
        "vasm",
        inputs,
        seed,
        crashes,
        make(&seeds),
        check,
        |t| t.clone().into_bytes(),
    )
}

#[allow(dead_code)]
fn main() {
    let o = match Options::from_args(1_000_000) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz_vasm: {e}");
            std::process::exit(2);
        }
    };
    let st = run(o.inputs, o.seed, o.crashes.as_deref());
    println!("{}", st.summary("vasm"));
    for f in &st.findings {
        println!("  {f}");
    }
    if !st.findings.is_empty() {
        std::process::exit(1);
    }
}
