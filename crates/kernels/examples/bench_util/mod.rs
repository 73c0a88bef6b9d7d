//! Timing helpers shared by the kernel micro benchmarks (`kernel_bench`, `r8_bench`):
//! thread CPU time on a shared machine, medians of self-sized samples, and inputs that
//! need no dependency.
#![allow(dead_code)] // each benchmark uses a subset

use std::time::Instant;

/// Bytes of weight copies a `cold` figure rotates through (more than any cache level).
pub const COLD_BYTES: usize = 1 << 30;

/// Nanoseconds this thread has run on a CPU (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`),
/// so time slices lost to other processes on a shared machine do not count. `None`
/// where unavailable (then wall time is used).
pub fn thread_cpu_ns() -> Option<u64> {
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
pub fn clock_name() -> &'static str {
    if use_wall() {
        "wall clock"
    } else {
        "thread CPU time (CLOCK_THREAD_CPUTIME_ID; excludes time slices taken by other processes)"
    }
}

pub fn use_wall() -> bool {
    std::env::var_os("BENCH_WALL").is_some() || thread_cpu_ns().is_none()
}

/// Median seconds per call of `f` over `runs` samples after warm-up. Each sample times
/// enough back-to-back calls to last >= 2 ms, so clock-read overhead stays negligible.
pub fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
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

/// SplitMix64: reproducible inputs.
pub struct Rng(pub u64);
impl Rng {
    pub fn f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}
