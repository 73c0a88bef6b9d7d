//! Structure-aware mutational fuzzing of the readers, shared by `examples/fuzz_gguf.rs`,
//! `examples/fuzz_hf.rs` and the short fuzz tests. Not part of the loading API.
//!
//! Each input is a valid seed with one to four mutations: byte-level (bit flips,
//! interesting bytes, deletions, duplications, splices from other seeds, truncation) and
//! field-level (a count, length, type, dim or offset the seed is known to hold, set to a
//! boundary value). The target runs under `catch_unwind`; a panic is a bug and its input
//! is kept. Results are counted by error kind.

mod gguf;
mod hf;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use gguf::{fuzz_gguf, gguf_seeds, GgufSeed};
pub use hf::{fuzz_hf, hf_seeds, HfSeeds};

/// SplitMix64: small, fast, and reproducible from one u64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A panic caught while running one input.
#[derive(Debug, Clone)]
pub struct Crash {
    pub message: String,
    pub input: Vec<u8>,
}

/// What a fuzzing run saw.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub target: String,
    pub inputs: u64,
    /// Inputs that parsed (and passed the round-trip checks).
    pub ok: u64,
    /// Error counts by kind name (`Truncated`, `BadHeader`, ...), prefixed by sub-target
    /// for the HF fuzzer.
    pub errors: BTreeMap<String, u64>,
    pub panics: Vec<Crash>,
    pub slowest: Duration,
    pub elapsed: Duration,
}

impl FuzzReport {
    pub(crate) fn new(target: &str) -> FuzzReport {
        FuzzReport {
            target: target.to_string(),
            ..FuzzReport::default()
        }
    }

    /// Run `f` on `input` under `catch_unwind` and count the outcome: `Ok(())` is a
    /// success, `Err(kind)` an error of that kind.
    pub(crate) fn run(&mut self, input: &[u8], f: impl FnOnce() -> Result<(), String>) {
        let t0 = Instant::now();
        let outcome = catch_quietly(f);
        self.slowest = self.slowest.max(t0.elapsed());
        self.inputs += 1;
        match outcome {
            Ok(Ok(())) => self.ok += 1,
            Ok(Err(kind)) => *self.errors.entry(kind).or_insert(0) += 1,
            Err(message) => {
                // Keep the first few of each message; the rest only add noise.
                let seen = self.panics.iter().filter(|c| c.message == message).count();
                if seen < 3 {
                    self.panics.push(Crash {
                        message,
                        input: input.to_vec(),
                    });
                } else {
                    *self.errors.entry("PANIC (repeat)".into()).or_insert(0) += 1;
                }
            }
        }
    }
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "{}: {} inputs in {:.1} s ({:.0}/s), {} ok, {} panics, slowest input {:.2} ms",
            self.target,
            self.inputs,
            secs,
            self.inputs as f64 / secs.max(1e-9),
            self.ok,
            self.panics.len(),
            self.slowest.as_secs_f64() * 1e3
        )?;
        for (kind, n) in &self.errors {
            writeln!(f, "  {kind:<40} {n:>10}")?;
        }
        for c in &self.panics {
            writeln!(f, "  PANIC: {} ({} byte input)", c.message, c.input.len())?;
        }
        Ok(())
    }
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Run `f`, turning a panic into `Err(message)` without printing it. The hook is
/// installed once per process and only swallows panics on threads that are inside
/// this function, so other tests' panics still print.
fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                LAST_PANIC.with(|p| *p.borrow_mut() = format!("{payload}{location}"));
            } else {
                previous(info);
            }
        }));
    });
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    result.map_err(|_| LAST_PANIC.with(|p| p.borrow().clone()))
}

/// The variant name of an error kind, from its `Debug` form.
pub(crate) fn kind_name(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Generic byte-level mutations shared by both fuzzers. `others` are splice donors.
pub(crate) fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>, others: &[&[u8]]) {
    const BYTES: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'9'];
    const WORDS: [u64; 10] = [
        0,
        1,
        31,
        32,
        0xffff,
        0xffff_ffff,
        1 << 32,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 7,
    ];
    let len = b.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            b[i] = *rng.pick(&BYTES);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            b[i] = rng.next_u64() as u8;
        }
        3 if len >= 8 => {
            let i = rng.below(len - 7);
            let v = *rng.pick(&WORDS);
            if rng.chance(1, 2) {
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            } else {
                b[i..i + 4].copy_from_slice(&(v as u32).to_le_bytes());
            }
        }
        4 => b.truncate(rng.below(len + 1)),
        5 if len > 0 => {
            // Delete a range.
            let start = rng.below(len);
            let n = 1 + rng.below((len - start).min(64));
            b.drain(start..start + n);
        }
        6 if len > 0 => {
            // Duplicate a range somewhere else.
            let start = rng.below(len);
            let n = 1 + rng.below((len - start).min(64));
            let chunk = b[start..start + n].to_vec();
            let at = rng.below(b.len() + 1);
            b.splice(at..at, chunk);
        }
        7 if !others.is_empty() => {
            // Splice in a chunk of another seed, overwriting or inserting.
            let donor = *rng.pick(others);
            if donor.is_empty() {
                return;
            }
            let start = rng.below(donor.len());
            let n = 1 + rng.below((donor.len() - start).min(128));
            let chunk = &donor[start..start + n];
            let at = rng.below(b.len() + 1);
            if rng.chance(1, 2) {
                let end = (at + n).min(b.len());
                b.splice(at..end, chunk.iter().copied());
            } else {
                b.splice(at..at, chunk.iter().copied());
            }
        }
        _ => {
            // Append junk.
            for _ in 0..1 + rng.below(16) {
                b.push(rng.next_u64() as u8);
            }
        }
    }
}
