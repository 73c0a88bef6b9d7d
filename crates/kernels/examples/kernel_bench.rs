//! Micro benchmark of `matmul_bt` (host figures, measured on this machine).
//!
//! `cargo run --release -p vtpu-kernels --example kernel_bench [runs]`
//!
//! For each level (AVX-512, AVX2) and weight dtype: GEMV (m = 1, decode) on the weight
//! shapes `n x k` = 576x1536, 896x4864, 4864x896, and GEMM with m = 128 (prefill). Every
//! result is validated against the scalar reference before it is timed. Each figure is
//! the median of `runs` samples after warm-up, each sample timing back-to-back calls
//! for >= 2 ms; time is this thread's CPU time (so a shared, busy machine does not
//! inflate it; `BENCH_WALL=1` switches to wall time). GEMV is reported twice:
//! - `hot`: the same matrix every call (it stays in L2/L3 when it fits);
//! - `cold`: rotating through copies totalling >= 1 GiB (more than any cache level of
//!   this machine, whose L3 is 300 MiB), so each call streams its weights from DRAM:
//!   the figure that bounds decode speed.
//!
//! Baselines measured in the same run: DRAM read bandwidth (a vector sum over 1 GiB)
//! and the FMA peak of one core (independent `vfmadd` chains). GFLOP/s count an FMA as
//! 2 flops; GB/s count weight bytes only.

use std::hint::black_box;
use std::time::Instant;

use half::{bf16, f16};
use vtpu_kernels::{scalar, KernelLevel, Kernels, Weights};

/// Bytes of weight copies the `cold` GEMV rotates through (and the DRAM baseline reads).
const COLD_BYTES: usize = 1 << 30;

/// Nanoseconds this thread has run on a CPU (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`),
/// so time slices lost to other processes on a shared machine do not count. `None`
/// where unavailable (then wall time is used).
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: libc's clock_gettime writes one timespec (two 64-bit fields on x86-64
        // and aarch64 Linux) through a valid pointer to a local.
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return Some(ts.sec as u64 * 1_000_000_000 + ts.nsec as u64);
        }
    }
    None
}

/// Which clock the figures use (printed in the header).
fn clock_name() -> &'static str {
    if use_wall() {
        "wall clock"
    } else {
        "thread CPU time (CLOCK_THREAD_CPUTIME_ID; excludes time slices taken by other processes)"
    }
}

fn use_wall() -> bool {
    std::env::var_os("BENCH_WALL").is_some() || thread_cpu_ns().is_none()
}

/// Median seconds per call of `f` over `runs` samples after warm-up. Each sample times
/// enough back-to-back calls to last >= 2 ms, so clock-read overhead stays negligible.
fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let wall = use_wall();
    let now = |w: bool| -> f64 {
        if w {
            thread_local!(static T0: Instant = Instant::now());
            T0.with(|t| t.elapsed().as_secs_f64())
        } else {
            thread_cpu_ns().unwrap_or(0) as f64 * 1e-9
        }
    };
    let t0 = Instant::now();
    for _ in 0..3 {
        f(); // warm-up
    }
    let per_call = t0.elapsed().as_secs_f64() / 3.0;
    let reps = ((2e-3 / per_call).ceil() as usize).clamp(1, 1000);
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = now(wall);
            for _ in 0..reps {
                f();
            }
            (now(wall) - s) / reps as f64
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[runs / 2]
}

struct Rng(u64);
impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

enum Owned {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl Owned {
    fn new(dtype: &str, v: &[f32]) -> Owned {
        match dtype {
            "f32" => Owned::F32(v.to_vec()),
            "f16" => Owned::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            _ => Owned::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }
    fn view(&self) -> Weights<'_> {
        match self {
            Owned::F32(v) => Weights::F32(v),
            Owned::F16(v) => Weights::F16(v),
            Owned::BF16(v) => Weights::BF16(v),
        }
    }
}

/// Checks a few output rows against the f64 reference (relative to the magnitudes).
fn validate(k: Kernels, a: &[f32], b: Weights<'_>, m: usize, n: usize, kk: usize) {
    let mut c = vec![0.0; m * n];
    k.matmul_bt(&mut c, a, b, m, n, kk).unwrap();
    let rows = [0, m / 2, m - 1];
    for &i in &rows {
        let mut want = vec![0.0; n];
        scalar::matmul_bt_rows(&mut want, &a[i * kk..(i + 1) * kk], b, 1, kk, 0, n);
        for j in 0..n {
            let abs: f64 = (0..kk)
                .map(|p| (a[i * kk + p] as f64 * b.get_f32(j * kk + p).unwrap() as f64).abs())
                .sum();
            let err = (c[i * n + j] as f64 - want[j] as f64).abs();
            assert!(
                err <= vtpu_kernels::tolerance::dot_bound(kk, abs),
                "validation failed at C[{i},{j}]: {} vs {}",
                c[i * n + j],
                want[j]
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn fma_peak_avx512(iters: u64) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(1.0); 12];
    let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// Measured single-core FMA peak in GFLOP/s (12 independent zmm FMA chains: enough to
/// cover 4-cycle latency on two FMA ports).
fn fma_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if vtpu_kernels::is_supported(KernelLevel::Avx512) {
        let iters = 20_000_000u64;
        // SAFETY: the CPU supports AVX-512 F (checked just above) and FMA (part of the level).
        let s = median_secs(5, || {
            black_box(unsafe { fma_peak_avx512(black_box(iters)) });
        });
        return Some(iters as f64 * 12.0 * 16.0 * 2.0 / s / 1e9);
    }
    None
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    // Optional second argument: only run sections whose op name contains it (gemv, gemm).
    let only = std::env::args().nth(2).unwrap_or_default();
    let mut rng = Rng(42);
    println!("vtpu-kernels matmul_bt micro benchmark (host figures; median of {runs} runs; FMA = 2 flops)");
    println!(
        "detected level: {}; timing by {}",
        vtpu_kernels::detected(),
        clock_name()
    );
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", l.trim());
    }

    // Baselines, same run.
    let big: Vec<f32> = (0..COLD_BYTES / 4).map(|i| i as f32).collect();
    let k512 = Kernels::current();
    let s = median_secs(5, || {
        let mut d = [0.0f32];
        k512.row_sum(&mut d, &big, 1, big.len()).unwrap();
        black_box(d);
    });
    let dram = (big.len() * 4) as f64 / s / 1e9;
    drop(big);
    println!(
        "baseline: DRAM read (row_sum over {} MiB, {}) = {dram:.1} GB/s",
        COLD_BYTES >> 20,
        k512.level()
    );
    let peak = fma_peak();
    match peak {
        Some(p) => println!("baseline: FMA peak, one core, 12 zmm chains = {p:.1} GFLOP/s"),
        None => println!("baseline: FMA peak unavailable (no AVX-512)"),
    }

    let shapes = [(576usize, 1536usize), (896, 4864), (4864, 896)];
    for level in [KernelLevel::Avx512, KernelLevel::Avx2] {
        let Some(k) = Kernels::new(level) else {
            println!("\n{level}: not supported on this CPU, skipped");
            continue;
        };
        println!("\n== level {level} ==");
        println!(
            "{:<8} {:<5} {:>11} {:>11} {:>11} {:>11}",
            "op", "dtype", "n x k", "hot GB/s", "cold GB/s", "GFLOP/s"
        );
        for &(n, kk) in shapes.iter().filter(|_| "gemv".contains(only.as_str())) {
            let vals: Vec<f32> = (0..n * kk).map(|_| rng.f32()).collect();
            for dtype in ["f32", "f16", "bf16"] {
                let w = Owned::new(dtype, &vals);
                let bytes = (n * kk * w.view().elem_bytes()) as f64;
                let a: Vec<f32> = (0..kk).map(|_| rng.f32()).collect();
                validate(k, &a, w.view(), 1, n, kk);
                let mut c = vec![0.0f32; n];
                let hot = median_secs(runs, || {
                    k.matmul_bt(&mut c, &a, w.view(), 1, n, kk).unwrap();
                    black_box(&c);
                });
                // Cold: enough copies to exceed every cache level.
                let copies = (COLD_BYTES as f64 / bytes).ceil() as usize;
                let many: Vec<Owned> = (0..copies).map(|_| Owned::new(dtype, &vals)).collect();
                let mut idx = 0;
                let cold = median_secs(runs, || {
                    k.matmul_bt(&mut c, &a, many[idx % copies].view(), 1, n, kk)
                        .unwrap();
                    idx += 1;
                    black_box(&c);
                });
                drop(many);
                let flops = 2.0 * (n * kk) as f64;
                println!(
                    "{:<8} {:<5} {:>11} {:>11.1} {:>11.1} {:>11.1}",
                    "gemv",
                    dtype,
                    format!("{n}x{kk}"),
                    bytes / hot / 1e9,
                    bytes / cold / 1e9,
                    flops / hot / 1e9
                );
            }
        }
        for &(n, kk) in shapes.iter().filter(|_| "gemm128".contains(only.as_str())) {
            let m = 128;
            let vals: Vec<f32> = (0..n * kk).map(|_| rng.f32()).collect();
            let a: Vec<f32> = (0..m * kk).map(|_| rng.f32()).collect();
            for dtype in ["f32", "f16", "bf16"] {
                let w = Owned::new(dtype, &vals);
                validate(k, &a, w.view(), m, n, kk);
                let mut c = vec![0.0f32; m * n];
                let t = median_secs(runs, || {
                    k.matmul_bt(&mut c, &a, w.view(), m, n, kk).unwrap();
                    black_box(&c);
                });
                let gflops = 2.0 * (m * n * kk) as f64 / t / 1e9;
                let frac = peak
                    .map(|p| format!("({:.0}% of FMA peak)", 100.0 * gflops / p))
                    .unwrap_or_default();
                println!(
                    "{:<8} {:<5} {:>11} {:>11} {:>11} {:>11.1} {frac}",
                    "gemm128",
                    dtype,
                    format!("{n}x{kk}"),
                    "",
                    "",
                    gflops
                );
            }
        }
    }
}
