//! Shared test helpers: a seeded RNG, input generators, and the levels to test.
#![allow(dead_code)] // each test binary uses a different subset

use vtpu_kernels::{KernelLevel, Kernels};

/// Lengths that cover empty input, lone tails, exact vectors, vector + tail, and long runs.
pub const SIZES: &[usize] = &[0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 257, 1000];

/// splitmix64: tiny, seeded, good enough to generate test data.
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

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        (lo as f64 + (hi as f64 - lo as f64) * self.unit()) as f32
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A value in (-1, 1) times 2^e with e uniform in [-6, 6]: mixed magnitudes and signs.
    pub fn mixed(&mut self) -> f32 {
        let e = self.below(13) as i32 - 6;
        self.uniform(-1.0, 1.0) * 2f32.powi(e)
    }

    pub fn vec_mixed(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.mixed()).collect()
    }

    pub fn vec_uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Any finite f32 bit pattern, positive (every exponent, subnormals included).
    pub fn any_positive(&mut self) -> f32 {
        f32::from_bits((self.next_u64() % 0x7f80_0000) as u32)
    }
}

/// Kernels for every level this CPU supports, announcing the ones it skips. Exact
/// bf16 products whatever `VTPU_BF16_PRODUCTS` says (the bf16-products mode has its
/// own tests and bound, `tests/matmul_bf16_products.rs`).
pub fn levels() -> Vec<Kernels> {
    KernelLevel::ALL
        .into_iter()
        .filter_map(|l| {
            let k = Kernels::new(l).map(|k| k.with_bf16_products(false));
            if k.is_none() {
                println!("note: {l} not supported by this CPU; skipping it");
            }
            k
        })
        .collect()
}

/// Collects failures and panics with the first few, so one run shows the pattern.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn check(&mut self, r: Result<(), String>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }

    pub fn finish(self, what: &str) {
        if !self.0.is_empty() {
            let n = self.0.len();
            let first: Vec<_> = self.0.into_iter().take(8).collect();
            panic!("{what}: {n} failures, first:\n{}", first.join("\n"));
        }
    }
}

/// Bitwise equality of two slices (NaN payloads included), with a description.
pub fn bits_eq(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
    }
    match got
        .iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: element {i}: got {:e} ({:#010x}), want {:e} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        )),
    }
}
