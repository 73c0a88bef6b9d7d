//! Structure-aware fuzzing of phext coordinates: text parsing (`Coord::parse_with_limit`),
//! packed keys (`Coord::from_key`), moves (`offset`) and the libphext boundary.
//!
//! Inputs are valid coordinates with their structure damaged on purpose: a part's
//! digits replaced by boundary numbers, leading zeros, signs, Unicode digits, spaces,
//! separators added or removed, groups swapped, very long parts; keys with one 14-bit
//! field out of range or the top bits set. Properties: no panic; accepted text is
//! canonical (`display(parse(s)) == s`); keys and the libphext form round-trip; error
//! messages stay short whatever the input's length.
//!
//! `cargo run --release -p vtpu-phext --example fuzz_coord -- --inputs 1000000`

#[path = "fuzz_support/mod.rs"]
pub mod fuzz_support;

use fuzz_support::{drive, Options, Outcome, Rng};
use vtpu_phext::{Coord, CoordKey, MAX_PART_LIMIT};

/// One fuzz input.
#[derive(Debug)]
pub enum Input {
    Text {
        text: String,
        limit: u32,
    },
    Key(u128),
    Move {
        text: String,
        dim: usize,
        delta: i64,
        limit: u32,
    },
}

fn valid_text(rng: &mut Rng) -> String {
    let part = |rng: &mut Rng| match rng.below(4) {
        0 => 1,
        1 => 1 + rng.below(999) as u32,
        2 => 999,
        _ => 1 + rng.below(MAX_PART_LIMIT as usize) as u32,
    };
    let p: Vec<u32> = (0..9).map(|_| part(rng)).collect();
    format!(
        "{}.{}.{}/{}.{}.{}/{}.{}.{}",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
    )
}

const JUNK: &[&str] = &[
    "0",
    "00",
    "01",
    "-1",
    "+1",
    " 1",
    "1 ",
    "\u{661}",
    "\u{ff11}",
    "1e3",
    "0x10",
    "99999999999999999999999",
    "16384",
    "16383",
    "1000",
    "999",
    "",
    ".",
    "/",
    "..",
    "//",
    "\u{0}",
    "\n",
    "\t",
    "\u{feff}",
    "é",
    "1.1",
    "1/1",
];

fn damage(rng: &mut Rng, text: &str) -> String {
    // Split into parts (keeping separators) and damage one or two of them.
    let mut pieces: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch == '.' || ch == '/' {
            pieces.push(std::mem::take(&mut cur));
            pieces.push(ch.to_string());
        } else {
            cur.push(ch);
        }
    }
    pieces.push(cur);
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(pieces.len());
        match rng.below(8) {
            0 => pieces[at] = rng.pick(JUNK).to_string(),
            1 => pieces[at] = rng.interesting_u64().to_string(),
            2 => pieces[at] = format!("0{}", pieces[at]),
            3 => {
                pieces.remove(at);
            }
            4 => {
                let p = pieces[at].clone();
                pieces.insert(at, p);
            }
            5 => pieces[at] = "9".repeat(1 + rng.below(100_000)),
            6 => {
                let b = rng.below(pieces.len());
                pieces.swap(at, b);
            }
            _ => {
                let mut chars: Vec<char> = pieces[at].chars().collect();
                if !chars.is_empty() {
                    let i = rng.below(chars.len());
                    chars[i] = char::from_u32(rng.next_u64() as u32 % 0x11_0000).unwrap_or('?');
                }
                pieces[at] = chars.into_iter().collect();
            }
        }
    }
    pieces.concat()
}

fn limit(rng: &mut Rng) -> u32 {
    match rng.below(5) {
        0 => 999,
        1 => MAX_PART_LIMIT,
        2 => rng.below(MAX_PART_LIMIT as usize + 3) as u32,
        3 => *rng.pick(&[0, 1, u32::MAX, MAX_PART_LIMIT + 1]),
        _ => 999,
    }
}

pub fn make(rng: &mut Rng) -> Input {
    match rng.below(10) {
        0..=5 => {
            let v = valid_text(rng);
            let text = if rng.chance(1, 6) { v } else { damage(rng, &v) };
            Input::Text {
                text,
                limit: limit(rng),
            }
        }
        6 | 7 => {
            // A valid key with one 14-bit field pushed out of range, or raw bits.
            let c = Coord::parse_with_limit(&valid_text(rng), MAX_PART_LIMIT).map(|c| c.key().0);
            let mut k = c.unwrap_or(0);
            match rng.below(4) {
                0 => k |= 1u128 << (126 + rng.below(2)),
                1 => k ^= 1u128 << rng.below(128),
                2 => k = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
                _ => {}
            }
            Input::Key(k)
        }
        _ => Input::Move {
            text: valid_text(rng),
            dim: rng.below(11),
            delta: rng.interesting_u64() as i64,
            limit: limit(rng),
        },
    }
}

/// Longest error message any input may produce (the text is echoed at most 64 chars).
const MAX_MESSAGE: usize = 400;

pub fn check(input: &Input) -> Outcome {
    match input {
        Input::Text { text, limit } => match Coord::parse_with_limit(text, *limit) {
            Ok(c) => {
                if c.to_string() != *text {
                    return Outcome::Violation(format!("{text:?} parsed but displays as {c}"));
                }
                if Coord::from_key(c.key()) != Ok(c) {
                    return Outcome::Violation(format!("{c}: key does not round-trip"));
                }
                if c.max_part() > *limit {
                    return Outcome::Violation(format!("{c}: accepted above limit {limit}"));
                }
                match Coord::from_libphext(&c.to_libphext(), MAX_PART_LIMIT) {
                    Ok(back) if back == c => Outcome::Accepted,
                    other => Outcome::Violation(format!("{c}: libphext round trip gave {other:?}")),
                }
            }
            Err(e) => {
                let m = e.to_string();
                if m.len() > MAX_MESSAGE {
                    return Outcome::Violation(format!("error message of {} bytes", m.len()));
                }
                Outcome::Rejected
            }
        },
        Input::Key(k) => match Coord::from_key(CoordKey(*k)) {
            Ok(c) if c.key().0 == *k => Outcome::Accepted,
            Ok(c) => Outcome::Violation(format!(
                "key {k:#x} decoded to {c} with key {:#x}",
                c.key().0
            )),
            Err(_) => Outcome::Rejected,
        },
        Input::Move {
            text,
            dim,
            delta,
            limit,
        } => {
            let Ok(c) = Coord::parse_with_limit(text, MAX_PART_LIMIT) else {
                return Outcome::Rejected;
            };
            let moved = c.offset(*dim, *delta, *limit);
            // step's contract: a valid limit that every part of `c` already obeys.
            let step_applies = (1..=MAX_PART_LIMIT).contains(limit) && c.max_part() <= *limit;
            let stepped = step_applies.then(|| c.step(*dim, *delta, *limit));
            match moved {
                Ok(m) => {
                    let want = i128::from(c.part(*dim).unwrap_or(0)) + i128::from(*delta);
                    if i128::from(m.part(*dim).unwrap_or(0)) != want {
                        return Outcome::Violation(format!("{c} offset({dim}, {delta}) = {m}"));
                    }
                    if let Some(s) = stepped {
                        if s != Some(m) {
                            return Outcome::Violation(format!("{c}: step {s:?} != offset {m}"));
                        }
                    }
                    Outcome::Accepted
                }
                Err(_) => match stepped {
                    Some(Some(s)) => {
                        Outcome::Violation(format!("{c}: step gave {s}, offset failed"))
                    }
                    _ => Outcome::Rejected,
                },
            }
        }
    }
}

pub fn bytes(input: &Input) -> Vec<u8> {
    match input {
        Input::Text { text, limit } => format!("text\n{limit}\n{text}").into_bytes(),
        Input::Key(k) => format!("key\n{k:#x}").into_bytes(),
        Input::Move {
            text,
            dim,
            delta,
            limit,
        } => format!("move\n{limit}\n{dim} {delta}\n{text}").into_bytes(),
    }
}

/// A saved finding back as an input (see `bytes`); None for a file in another form.
pub fn parse_saved(b: &[u8]) -> Option<Input> {
    let s = String::from_utf8_lossy(b);
    let mut lines = s.splitn(4, '\n');
    match lines.next()? {
        "text" => {
            let limit = lines.next()?.parse().ok()?;
            let rest: Vec<&str> = lines.collect();
            Some(Input::Text {
                text: rest.join("\n"),
                limit,
            })
        }
        "key" => {
            let k = u128::from_str_radix(lines.next()?.trim_start_matches("0x"), 16).ok()?;
            Some(Input::Key(k))
        }
        "move" => {
            let limit = lines.next()?.parse().ok()?;
            let (d, delta) = lines.next()?.split_once(' ')?;
            Some(Input::Move {
                dim: d.parse().ok()?,
                delta: delta.parse().ok()?,
                limit,
                text: lines.next()?.to_string(),
            })
        }
        _ => None,
    }
}

pub fn run(inputs: u64, seed: u64, crashes: Option<&std::path::Path>) -> fuzz_support::Stats {
    drive("coord", "txt", inputs, seed, crashes, make, check, bytes)
}

#[allow(dead_code)]
fn main() {
    let o = match Options::from_args(1_000_000) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz_coord: {e}");
            std::process::exit(2);
        }
    };
    let st = run(o.inputs, o.seed, o.crashes.as_deref());
    println!("{}", st.summary("coord"));
    for f in &st.findings {
        println!("  {f}");
    }
    if !st.findings.is_empty() {
        std::process::exit(1);
    }
}
