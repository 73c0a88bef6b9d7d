//! Structure-aware fuzzing of the sidecar loader (`PhextSpace::load` of a manifest whose
//! sidecar was damaged).
//!
//! Seeds are saves of real spaces. Each input damages a seed's sidecar where the format
//! has structure: a header field (length, page count, content id, part limit, layout,
//! version, reserved bytes) with the header checksum recomputed or not; bytes inside a
//! page, with the manifest's checksum for that page updated or not; the file cut or
//! extended; random bytes anywhere. The oracle knows what must happen:
//! - page bytes changed and the manifest not updated: the load must fail;
//! - a header byte changed without a new header checksum: the load must fail;
//! - page bytes changed and the manifest updated to match: the load must succeed
//!   and the page must hold the new bytes.
//!
//! Otherwise either outcome is fine, but never a panic or a hang.
//!
//! `cargo run --release -p vtpu-phext --example fuzz_sidecar -- --inputs 1000000`

#[path = "fuzz_support/mod.rs"]
pub mod fuzz_support;

use fuzz_support::{drive, mutate_bytes, seed_spaces, Options, Outcome, Rng};
use std::path::{Path, PathBuf};
use vtpu_phext::{Coord, LoadMode, PhextSpace};

/// A saved seed: manifest text, sidecar name and bytes, and its pages' placement.
pub struct Seed {
    manifest: String,
    sidecar_name: String,
    sidecar: Vec<u8>,
    /// (coordinate, offset, length) of each page.
    pages: Vec<(Coord, usize, usize)>,
}

pub struct Seeds {
    dir: PathBuf,
    seeds: Vec<Seed>,
}

fn field<'a>(scroll: &'a str, key: &str) -> Option<&'a str> {
    scroll
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

impl Seeds {
    pub fn new(dir: &Path) -> Seeds {
        let _ = std::fs::create_dir_all(dir);
        let mut seeds = Vec::new();
        for (i, s) in seed_spaces().into_iter().enumerate() {
            let m = dir.join(format!("seed{i}.phext"));
            let Ok(stats) = s.save(&m) else { continue };
            let Some(sc) = stats.sidecar else { continue }; // the empty space has none
            let (Ok(manifest), Ok(sidecar)) = (std::fs::read_to_string(&m), std::fs::read(&sc))
            else {
                continue;
            };
            let pages = libphext::phext::explode(&manifest)
                .into_iter()
                .filter_map(|(c, s)| {
                    let c = Coord::from_libphext(&c, 999).ok()?;
                    let off = field(&s, "offset")?.parse().ok()?;
                    let len = field(&s, "length")?.parse().ok()?;
                    Some((c, off, len))
                })
                .collect();
            let sidecar_name = sc
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            seeds.push(Seed {
                manifest,
                sidecar_name,
                sidecar,
                pages,
            });
        }
        Seeds {
            dir: dir.to_path_buf(),
            seeds,
        }
    }
}

/// What the loader must do with an input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expect {
    Fail,
    /// Succeed, with the page at this coordinate holding exactly the bytes of the
    /// sidecar at [offset, offset + len).
    Load(Coord, usize, usize),
    Either,
}

pub struct Input {
    pub seed: usize,
    pub manifest: String,
    pub sidecar: Vec<u8>,
    pub expect: Expect,
    pub copy: bool,
}

fn header_sum(b: &mut [u8]) {
    if b.len() >= 64 {
        let s = xxhash_rust::xxh3::xxh3_64(&b[..56]);
        b[56..64].copy_from_slice(&s.to_le_bytes());
    }
}

/// The manifest with the checksum of the page at `coord` set to `sum`.
fn with_sum(manifest: &str, coord: Coord, sum: u64) -> String {
    let map = libphext::phext::explode(manifest)
        .into_iter()
        .map(|(c, s)| {
            let ours = Coord::from_libphext(&c, 999).is_ok_and(|x| x == coord);
            let s = if ours {
                s.lines()
                    .map(|l| {
                        if l.starts_with("xxh3=") {
                            format!("xxh3={sum:016x}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                s
            };
            (c, s)
        })
        .collect();
    libphext::phext::implode(map)
}

pub fn make(seeds: &Seeds) -> impl FnMut(&mut Rng) -> Input + '_ {
    move |rng| {
        let si = rng.below(seeds.seeds.len());
        let seed = &seeds.seeds[si];
        let mut b = seed.sidecar.clone();
        let mut manifest = seed.manifest.clone();
        let mut expect = Expect::Either;
        match rng.below(6) {
            0 | 1 => {
                // A header field: 8..12 version, 12..16 header length, 16..24 total length,
                // 24..32 pages, 32..40 content id, 40..44 part limit, 44 layout, 45..56
                // reserved.
                let (at, width) = *rng.pick(&[
                    (8, 4),
                    (12, 4),
                    (16, 8),
                    (24, 8),
                    (32, 8),
                    (40, 4),
                    (44, 1),
                    (45, 11),
                ]);
                let v = rng.interesting_u64().to_le_bytes();
                let before = b.clone();
                for (k, &byte) in v.iter().enumerate().take(width.min(8)) {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = byte;
                    }
                }
                if rng.chance(2, 3) {
                    header_sum(&mut b);
                } else if b != before {
                    expect = Expect::Fail;
                }
            }
            2 | 3 => {
                // Bytes inside a page.
                let pages: Vec<_> = seed.pages.iter().filter(|p| p.2 > 0).collect();
                if let Some(&&(c, off, len)) = (!pages.is_empty()).then(|| rng.pick(&pages)) {
                    let before = b[off..off + len].to_vec();
                    for _ in 0..1 + rng.below(4) {
                        let at = off + rng.below(len);
                        b[at] = rng.next_u64() as u8;
                    }
                    if b[off..off + len] != before[..] {
                        if rng.chance(1, 2) {
                            let sum = xxhash_rust::xxh3::xxh3_64(&b[off..off + len]);
                            manifest = with_sum(&manifest, c, sum);
                            expect = Expect::Load(c, off, len);
                        } else {
                            expect = Expect::Fail;
                        }
                    }
                }
            }
            4 => {
                // Cut or extend, with the header's length updated or not.
                let new_len = match rng.below(3) {
                    0 => rng.below(b.len()),
                    1 => b.len() + 1 + rng.below(200),
                    _ => 64,
                };
                b.resize(new_len, 0);
                if rng.chance(1, 2) && b.len() >= 64 {
                    b[16..24].copy_from_slice(&(new_len as u64).to_le_bytes());
                    header_sum(&mut b);
                }
            }
            _ => {
                for _ in 0..1 + rng.below(3) {
                    mutate_bytes(rng, &mut b);
                }
            }
        }
        Input {
            seed: si,
            manifest,
            sidecar: b,
            expect,
            copy: rng.chance(1, 2),
        }
    }
}

pub fn check(seeds: &Seeds) -> impl Fn(&Input) -> Outcome + '_ {
    move |input| {
        let seed = &seeds.seeds[input.seed];
        let m = seeds.dir.join("fuzz.phext");
        let sc = seeds.dir.join(&seed.sidecar_name);
        if std::fs::write(&m, &input.manifest).is_err()
            || std::fs::write(&sc, &input.sidecar).is_err()
        {
            return Outcome::Violation("cannot write the files".into());
        }
        let mode = if input.copy {
            LoadMode::Copy
        } else {
            LoadMode::Map
        };
        let loaded = PhextSpace::load(&m, mode);
        let out = match (input.expect, &loaded) {
            (Expect::Fail, Ok(_)) => {
                Outcome::Violation("damage accepted: load should have failed".into())
            }
            (Expect::Load(c, off, len), Ok(s)) => {
                let got = s.get(c).map(|p| p.read(|b| b.to_vec()));
                if got.as_deref() == Some(&input.sidecar[off..off + len]) {
                    Outcome::Accepted
                } else {
                    Outcome::Violation(format!("page {c} does not hold the sidecar's bytes"))
                }
            }
            (Expect::Load(..), Err(e)) => {
                Outcome::Violation(format!("consistent edit refused: {e}"))
            }
            (_, Ok(_)) => Outcome::Accepted,
            (_, Err(_)) => Outcome::Rejected,
        };
        // Drop the mapping before the files are rewritten for the next input.
        drop(loaded);
        out
    }
}

pub fn run(inputs: u64, seed: u64, crashes: Option<&Path>) -> fuzz_support::Stats {
    let dir = fuzz_support::scratch_dir(&format!("sidecar-{seed}"));
    let seeds = Seeds::new(&dir);
    let st = drive(
        "sidecar",
        "bin",
        inputs,
        seed,
        crashes,
        make(&seeds),
        check(&seeds),
        |i| {
            // A finding is kept as: manifest length (8 bytes), manifest, seed index (8), sidecar.
            let mut v = (i.manifest.len() as u64).to_le_bytes().to_vec();
            v.extend(i.manifest.as_bytes());
            v.extend((i.seed as u64).to_le_bytes());
            v.extend(&i.sidecar);
            v
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    st
}

/// Replay a saved finding (see `run` for its layout): no panic, whatever the result.
pub fn replay(bytes: &[u8]) -> Option<Outcome> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let manifest = String::from_utf8(bytes.get(8..8 + n)?.to_vec()).ok()?;
    let seed = u64::from_le_bytes(bytes.get(8 + n..16 + n)?.try_into().ok()?) as usize;
    let sidecar = bytes.get(16 + n..)?.to_vec();
    let dir = fuzz_support::scratch_dir("sidecar-replay");
    let seeds = Seeds::new(&dir);
    let out = (seed < seeds.seeds.len()).then(|| {
        check(&seeds)(&Input {
            seed,
            manifest,
            sidecar,
            expect: Expect::Either,
            copy: true,
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[allow(dead_code)]
fn main() {
    let o = match Options::from_args(1_000_000) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz_sidecar: {e}");
            std::process::exit(2);
        }
    };
    let st = run(o.inputs, o.seed, o.crashes.as_deref());
    println!("{}", st.summary("sidecar"));
    for f in &st.findings {
        println!("  {f}");
    }
    if !st.findings.is_empty() {
        std::process::exit(1);
    }
}
