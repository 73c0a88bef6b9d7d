//! Structure-aware fuzzing of the `.phext` manifest loader (`PhextSpace::load`).
//!
//! Seeds are manifests saved from real spaces (every dtype, frozen and writable pages,
//! a zero-length page, every layout, an empty space). Each input takes a seed's
//! scrolls and damages them as a person or a broken tool would: a key's value set to
//! a boundary number, a negative, a 100 000-digit number, Unicode or nothing; lines
//! deleted, duplicated, swapped, renamed or added; scrolls moved to other coordinates
//! (also beyond 999), duplicated at overlapping offsets, deleted; the empty-space
//! marker added; the sidecar name changed (paths, other manifests); and, on top, raw
//! bytes (phext delimiters, invalid UTF-8). The manifest is written next to the seed's
//! intact sidecar and loaded in both modes. Properties: no panic, no hang; an accepted
//! manifest loads exactly its page scrolls, and its space saves and reloads equal.
//!
//! `cargo run --release -p vtpu-phext --example fuzz_manifest -- --inputs 1000000`

#![allow(clippy::result_large_err)] // PersistError is the loader's own type

#[path = "fuzz_support/mod.rs"]
pub mod fuzz_support;

use fuzz_support::{drive, mutate_bytes, seed_spaces, Options, Outcome, Rng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vtpu_phext::{Coord, LoadMode, PhextSpace};

/// The seed manifests (text) and the directory holding their sidecars.
pub struct Seeds {
    dir: PathBuf,
    texts: Vec<String>,
}

impl Seeds {
    pub fn new(dir: &Path) -> Seeds {
        let _ = std::fs::create_dir_all(dir);
        let mut texts = Vec::new();
        for (i, s) in seed_spaces().into_iter().enumerate() {
            let m = dir.join(format!("seed{i}.phext"));
            if s.save(&m).is_ok() {
                if let Ok(t) = std::fs::read_to_string(&m) {
                    texts.push(t);
                }
            }
        }
        Seeds {
            dir: dir.to_path_buf(),
            texts,
        }
    }
}

const KEYS: &[&str] = &[
    "vtpu-page",
    "dtype",
    "shape",
    "kind",
    "read_only",
    "offset",
    "length",
    "xxh3",
    "sidecar",
    "vtpu-empty-space",
    "layout",
    "part_limit",
    "title",
];

fn value(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => rng.interesting_u64().to_string(),
        1 => format!("-{}", rng.below(100)),
        2 => "9".repeat(1 + rng.below(100_000)),
        3 => String::new(),
        4 => format!("{}x{}", rng.interesting_u64(), rng.interesting_u64()),
        5 => rng
            .pick(&[
                "f32", "q8_0", "q4_k", "bf16", "owned", "mapped", "scratch", "true", "false",
                "zorder",
            ])
            .to_string(),
        6 => format!("{:016x}", rng.next_u64()),
        7 => rng
            .pick(&[
                "../etc/passwd",
                "a/b.bin",
                "",
                ".",
                "..",
                "x\u{1}.bin",
                "seed0.phext.0000000000000000.bin",
            ])
            .to_string(),
        8 => "é\u{feff}\u{17}".to_string(),
        _ => (rng.below(4096) * 64).to_string(),
    }
}

fn coord(rng: &mut Rng) -> Coord {
    let limit = if rng.chance(1, 8) { 16383 } else { 999 };
    let parts = std::array::from_fn(|_| match rng.below(3) {
        0 => 1,
        1 => 1 + rng.below(3) as u32,
        _ => 1 + rng.below(limit as usize) as u32,
    });
    Coord::new_with_limit(parts, limit).unwrap_or(Coord::ORIGIN)
}

fn damage_scroll(rng: &mut Rng, scroll: &str) -> String {
    let mut lines: Vec<String> = scroll.split('\n').map(str::to_string).collect();
    let at = rng.below(lines.len());
    match rng.below(7) {
        0 | 1 => {
            let key = lines[at]
                .split_once('=')
                .map_or(lines[at].clone(), |(k, _)| k.to_string());
            lines[at] = format!("{key}={}", value(rng));
        }
        2 => {
            lines.remove(at);
        }
        3 => {
            let l = lines[at].clone();
            lines.insert(rng.below(lines.len() + 1), l);
        }
        4 => {
            let b = rng.below(lines.len());
            lines.swap(at, b);
        }
        5 => {
            let v = lines[at]
                .split_once('=')
                .map_or(String::new(), |(_, v)| v.to_string());
            lines[at] = format!("{}={v}", rng.pick(KEYS));
        }
        _ => lines.insert(at, format!("{}={}", rng.pick(KEYS), value(rng))),
    }
    lines.join("\n")
}

/// Mutated manifest bytes made from `seed`.
fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut scrolls: HashMap<Coord, String> = libphext::phext::explode(seed)
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .filter_map(|(c, s)| Coord::from_libphext(&c, 999).ok().map(|c| (c, s)))
        .collect();
    let mut keys: Vec<Coord> = scrolls.keys().copied().collect();
    keys.sort();
    for _ in 0..1 + rng.below(3) {
        let victim = (!keys.is_empty()).then(|| keys[rng.below(keys.len())]);
        match (rng.below(8), victim) {
            (0..=3, Some(c)) => {
                if let Some(s) = scrolls.get(&c).cloned() {
                    scrolls.insert(c, damage_scroll(rng, &s));
                }
            }
            (4, Some(c)) => {
                if let Some(s) = scrolls.remove(&c) {
                    scrolls.insert(coord(rng), s);
                }
            }
            (5, Some(c)) => {
                if let Some(s) = scrolls.get(&c).cloned() {
                    scrolls.insert(coord(rng), s);
                }
            }
            (6, Some(c)) => {
                scrolls.remove(&c);
            }
            _ => {
                scrolls.insert(
                    coord(rng),
                    format!(
                        "vtpu-empty-space=1\nlayout={}\npart_limit={}",
                        value(rng),
                        value(rng)
                    ),
                );
            }
        }
    }
    let map = scrolls
        .into_iter()
        .map(|(c, s)| (c.to_libphext(), s))
        .collect();
    let mut bytes = libphext::phext::implode(map).into_bytes();
    if rng.chance(1, 5) {
        for _ in 0..1 + rng.below(3) {
            if rng.chance(1, 2) && !bytes.is_empty() {
                let at = rng.below(bytes.len());
                bytes.insert(
                    at,
                    *rng.pick(&[
                        0x17u8, 0x18, 0x19, 0x1a, 0x1c, 0x1d, 0x1e, 0x1f, 0x01, b'\n', b'=',
                    ]),
                );
            } else {
                mutate_bytes(rng, &mut bytes);
            }
        }
    }
    bytes
}

pub struct Input {
    pub bytes: Vec<u8>,
    pub copy: bool,
}

pub fn make(seeds: &Seeds) -> impl FnMut(&mut Rng) -> Input + '_ {
    move |rng| {
        let seed = rng.pick(&seeds.texts);
        Input {
            bytes: mutate(rng, seed),
            copy: rng.chance(1, 2),
        }
    }
}

/// Scrolls with text in a manifest (what an accepted load must have turned into pages).
fn page_scrolls(bytes: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(bytes).ok()?;
    Some(
        libphext::phext::explode(text)
            .values()
            .filter(|s| !s.is_empty() && !s.starts_with("vtpu-empty-space="))
            .count(),
    )
}

pub fn check<'a>(
    seeds: &'a Seeds,
    counter: &'a std::cell::Cell<u64>,
) -> impl Fn(&Input) -> Outcome + 'a {
    move |input| {
        let n = counter.get();
        counter.set(n + 1);
        let m = seeds.dir.join("fuzz.phext");
        if std::fs::write(&m, &input.bytes).is_err() {
            return Outcome::Violation("cannot write the manifest".into());
        }
        let mode = if input.copy {
            LoadMode::Copy
        } else {
            LoadMode::Map
        };
        let Ok(space) = PhextSpace::load(&m, mode) else {
            return Outcome::Rejected;
        };
        let want = page_scrolls(&input.bytes).unwrap_or(usize::MAX);
        if space.pages().len() != want {
            return Outcome::Violation(format!(
                "accepted a manifest of {want} page scrolls as {} pages",
                space.pages().len()
            ));
        }
        // Now and then: the accepted space saves and reloads equal.
        if n.is_multiple_of(64) {
            let again = seeds.dir.join("again.phext");
            let snap = |s: &PhextSpace| {
                let mut v: Vec<_> = s
                    .pages()
                    .iter()
                    .map(|p| (p.coord(), p.dtype(), p.shape(), p.read(|b| b.to_vec())))
                    .collect();
                v.sort_by_key(|t| t.0);
                v
            };
            match space
                .save(&again)
                .and_then(|_| PhextSpace::load(&again, LoadMode::Copy))
            {
                Ok(back) if snap(&back) == snap(&space) => {}
                Ok(_) => {
                    return Outcome::Violation(
                        "accepted space does not save and reload equal".into(),
                    )
                }
                Err(e) => {
                    return Outcome::Violation(format!(
                        "accepted space does not save and reload: {e}"
                    ))
                }
            }
        }
        Outcome::Accepted
    }
}

pub fn run(inputs: u64, seed: u64, crashes: Option<&Path>) -> fuzz_support::Stats {
    let dir = fuzz_support::scratch_dir(&format!("manifest-{seed}"));
    let seeds = Seeds::new(&dir);
    let counter = std::cell::Cell::new(0);
    let st = drive(
        "manifest",
        "phext",
        inputs,
        seed,
        crashes,
        make(&seeds),
        check(&seeds, &counter),
        |i| i.bytes.clone(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    st
}

/// Replay a saved finding: load it as a manifest next to the seed sidecars.
pub fn replay(bytes: &[u8]) -> Outcome {
    let dir = fuzz_support::scratch_dir("manifest-replay");
    let seeds = Seeds::new(&dir);
    let counter = std::cell::Cell::new(1);
    let r = check(&seeds, &counter)(&Input {
        bytes: bytes.to_vec(),
        copy: true,
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[allow(dead_code)]
fn main() {
    let o = match Options::from_args(1_000_000) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz_manifest: {e}");
            std::process::exit(2);
        }
    };
    let st = run(o.inputs, o.seed, o.crashes.as_deref());
    println!("{}", st.summary("manifest"));
    for f in &st.findings {
        println!("  {f}");
    }
    if !st.findings.is_empty() {
        std::process::exit(1);
    }
}
