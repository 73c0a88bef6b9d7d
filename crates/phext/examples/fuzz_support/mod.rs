//! The driver shared by the structure-aware fuzz examples (`fuzz_*.rs` in this crate
//! and in `vtpu-isa`, which includes this file by path) and their short versions in
//! the test suites.
//!
//! Only the stable toolchain exists here (no cargo-fuzz), so each target is a
//! mutational loop: a seed corpus of valid files, mutations that know the file's
//! structure (fields, counts, checksums), and a check of the parser's contract on every
//! input: never panic, and whatever is accepted round-trips. A panic or a broken
//! property is a finding: the input is written to the crash directory (the hostile
//! corpus keeps it as a regression case) and the loop goes on.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// splitmix64: small, fast, and reproducible from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den.max(1) < num
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A number that tends to sit on a boundary: 0, 1, powers of two and their
    /// neighbours, the maximum of each width, or anything.
    pub fn interesting_u64(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => 1,
            2 => {
                let p = 1u64 << self.below(64);
                match self.below(3) {
                    0 => p - 1,
                    1 => p,
                    _ => p + 1,
                }
            }
            3 => *self.pick(&[u8::MAX as u64, u16::MAX as u64, u32::MAX as u64, u64::MAX]),
            4 => self.below(1000) as u64,
            5 => u64::MAX - self.below(4) as u64,
            _ => self.next_u64(),
        }
    }
}

/// What one input did.
pub enum Outcome {
    Accepted,
    Rejected,
    /// A broken property (not a panic): what went wrong.
    Violation(String),
}

/// The result of a fuzz run.
#[derive(Debug, Default)]
pub struct Stats {
    pub inputs: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// One line per finding (panic or violation), with where its input was saved.
    pub findings: Vec<String>,
    pub elapsed: Duration,
}

impl Stats {
    pub fn summary(&self, name: &str) -> String {
        format!(
            "fuzz {name}: {} inputs in {:.1} s ({:.0}/s), {} accepted, {} rejected, {} finding(s)",
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.accepted,
            self.rejected,
            self.findings.len()
        )
    }
}

/// Command-line options of a fuzz example: `--inputs N --seed S --crashes DIR`.
pub struct Options {
    pub inputs: u64,
    pub seed: u64,
    pub crashes: Option<PathBuf>,
}

impl Options {
    pub fn from_args(default_inputs: u64) -> Result<Options, String> {
        let mut o = Options {
            inputs: default_inputs,
            seed: 1,
            crashes: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = args
                .get(i + 1)
                .ok_or(format!("{} needs a value", args[i]))?;
            match args[i].as_str() {
                "--inputs" => o.inputs = value.parse().map_err(|_| "--inputs N")?,
                "--seed" => o.seed = value.parse().map_err(|_| "--seed N")?,
                "--crashes" => o.crashes = Some(PathBuf::from(value)),
                other => {
                    return Err(format!(
                        "unknown option {other} (--inputs N --seed N --crashes DIR)"
                    ))
                }
            }
            i += 2;
        }
        Ok(o)
    }
}

/// Run `check` on `n` inputs made by `make`; catch panics; save every finding's input
/// (as produced by `bytes`) in `crashes` as `<name>-<hash>.<ext>`.
#[allow(clippy::too_many_arguments)]
pub fn drive<I>(
    name: &str,
    ext: &str,
    n: u64,
    seed: u64,
    crashes: Option<&Path>,
    mut make: impl FnMut(&mut Rng) -> I,
    check: impl Fn(&I) -> Outcome,
    bytes: impl Fn(&I) -> Vec<u8>,
) -> Stats {
    let mut rng = Rng::new(seed);
    let mut st = Stats::default();
    // Panics are findings, reported once each below: keep the hook quiet on this thread
    // while it fuzzes (other threads, e.g. tests running beside it, keep their output).
    quiet_panics_here(true);
    let t0 = Instant::now();
    for _ in 0..n {
        let input = make(&mut rng);
        st.inputs += 1;
        let what = match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Outcome::Accepted) => {
                st.accepted += 1;
                continue;
            }
            Ok(Outcome::Rejected) => {
                st.rejected += 1;
                continue;
            }
            Ok(Outcome::Violation(v)) => v,
            Err(p) => format!(
                "panic: {}",
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            ),
        };
        let data = bytes(&input);
        let saved = crashes.map(|dir| {
            let _ = std::fs::create_dir_all(dir);
            let path = dir.join(format!("{name}-{:016x}.{ext}", fnv1a(&data)));
            let _ = std::fs::write(&path, &data);
            path.display().to_string()
        });
        st.findings.push(format!(
            "{what} (input {})",
            saved.unwrap_or_else(|| "not saved".into())
        ));
        if st.findings.len() >= 100 {
            break; // something is badly broken; the first hundred tell the story
        }
    }
    st.elapsed = t0.elapsed();
    quiet_panics_here(false);
    st
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silence the panic hook on the calling thread only (installed once per process, in
/// front of whatever hook was there).
fn quiet_panics_here(on: bool) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(on));
}

/// A stable name for a finding's file.
pub fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Byte-level mutations every target uses on top of its structure-aware ones.
pub fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        b.push(rng.next_u64() as u8);
        return;
    }
    let at = rng.below(b.len());
    match rng.below(7) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b[at] = rng.next_u64() as u8,
        2 => b.insert(at, rng.next_u64() as u8),
        3 => {
            b.remove(at);
        }
        4 => b.truncate(at),
        5 => {
            // Overwrite 8 bytes with a boundary number (hits counts and sizes).
            let v = rng.interesting_u64().to_le_bytes();
            for (k, x) in v.into_iter().enumerate() {
                if let Some(y) = b.get_mut(at + k) {
                    *y = x;
                }
            }
        }
        _ => {
            // Duplicate a chunk (repeated sections, overlapping records).
            let len = rng.below(64).min(b.len() - at);
            let chunk = b[at..at + len].to_vec();
            let to = rng.below(b.len() + 1);
            b.splice(to..to, chunk);
        }
    }
}

/// A scratch directory for targets that write files per input: in memory (`/dev/shm`)
/// where there is one, because rewriting a file on ext4 flushes it to disk on close
/// (200 inputs/s instead of thousands).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("vtpu-fuzz-{tag}-{}", std::process::id()))
}

/// Files under `dir` (for replaying saved findings), sorted; empty if there is none.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Seed spaces for the persistence targets: every dtype, writable and frozen pages,
/// a zero-length page, several layouts, and one space without pages.
pub fn seed_spaces() -> Vec<vtpu_phext::PhextSpace> {
    use vtpu_phext::{Coord, DType, Layout, PageKind, PhextSpace};
    let mut out = Vec::new();
    for (n, layout) in Layout::ALL.into_iter().enumerate() {
        let s = PhextSpace::new(layout);
        let mut rng = Rng::new(n as u64 + 7);
        for (i, d) in DType::ALL.into_iter().enumerate() {
            let shape = [1 + i % 3, d.block_elems() * (1 + i % 2)];
            let Ok(len) = d.bytes_for(shape[0] * shape[1]) else {
                continue;
            };
            let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let parts = [
                1,
                1 + n as u32,
                1 + (i % 3) as u32,
                1,
                1,
                1,
                1,
                1 + (i / 3) as u32,
                1 + i as u32,
            ];
            let Ok(c) = Coord::new(parts) else {
                continue;
            };
            let _ = s.insert_bytes(c, d, shape, &data, i % 2 == 0, PageKind::Owned);
        }
        if let Ok(c) = Coord::new([2, 1, 1, 1, 1, 1, 1, 1, 1]) {
            let _ = s.alloc(c, DType::F32, [0, 8], PageKind::Owned);
        }
        out.push(s);
    }
    out.push(PhextSpace::new(Layout::ZOrder));
    out
}
