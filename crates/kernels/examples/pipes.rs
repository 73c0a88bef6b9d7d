//! Which execution pipes the int8 GEMM's instructions share on this CPU: throughput of
//! `vpdpbusd`, `vfmadd231ps` and `vcvtdq2ps` (ymm, and the dpbusd + cvt + FMA triple in
//! zmm), alone and mixed, over 12 independent register chains, in cycles per group.
//! Cycles come from a chain of dependent integer adds timed the same way (one per
//! cycle), so the figures do not depend on the clock. x86-64 with AVX-512 VNNI only.
//!
//! `cargo run --release -p vtpu-kernels --example pipes`
//!
//! On Zen 4 (BENCHMARKS.md, "Session 7 changes"): each instruction alone 0.5 cycles,
//! dpbusd + FMA ~1.0 per pair (the same two pipes), dpbusd + cvt + FMA ~1.1 per triple,
//! the zmm triple ~2.0.
//! So llama.cpp's eight-lane Q8_0 products (one dpbusd and one FMA per 32
//! multiply-adds) top out at 32 multiply-adds per cycle and core.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    const ITERS: u64 = 50_000_000;

    /// Seconds per cycle: a chain of dependent adds, one per cycle.
    fn cycle_s() -> f64 {
        let mut x = 0u64;
        let t = Instant::now();
        for _ in 0..ITERS {
            // SAFETY: register arithmetic only.
            unsafe {
                asm!("add {0}, 1", "add {0}, 1", "add {0}, 1", "add {0}, 1", inout(reg) x);
            }
        }
        std::hint::black_box(x);
        t.elapsed().as_secs_f64() / (4 * ITERS) as f64
    }

    /// Times the 12 instructions (`groups` groups) in cycles per group; the source
    /// register 15 holds 1.0 in every f32 lane (no denormals).
    macro_rules! bench {
        ($cyc:expr, $name:expr, $groups:expr, $($line:literal),+) => {{
            let one = std::arch::x86_64::_mm512_set1_ps(1.0);
            let t = Instant::now();
            for _ in 0..ITERS {
                // SAFETY: the instructions only write the clobbered registers 0-11 and
                // read register 15.
                unsafe {
                    asm!($($line),+,
                        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                        out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                        out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                        in("zmm15") one,
                        options(nostack, nomem));
                }
            }
            let cycles = t.elapsed().as_secs_f64() / $cyc / ITERS as f64;
            println!("{:<24} {:.2} cycles per group", $name, cycles / $groups as f64);
        }};
    }

    pub fn run() {
        if !(is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")) {
            println!("needs AVX-512 VNNI");
            return;
        }
        // SAFETY: the features were just detected.
        unsafe { measure() }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
    unsafe fn measure() {
        let c = cycle_s();
        println!("clock: {:.2} GHz (dependent integer adds)", 1e-9 / c);
        bench!(
            c,
            "fma",
            12,
            "vfmadd231ps ymm0, ymm15, ymm15",
            "vfmadd231ps ymm1, ymm15, ymm15",
            "vfmadd231ps ymm2, ymm15, ymm15",
            "vfmadd231ps ymm3, ymm15, ymm15",
            "vfmadd231ps ymm4, ymm15, ymm15",
            "vfmadd231ps ymm5, ymm15, ymm15",
            "vfmadd231ps ymm6, ymm15, ymm15",
            "vfmadd231ps ymm7, ymm15, ymm15",
            "vfmadd231ps ymm8, ymm15, ymm15",
            "vfmadd231ps ymm9, ymm15, ymm15",
            "vfmadd231ps ymm10, ymm15, ymm15",
            "vfmadd231ps ymm11, ymm15, ymm15"
        );
        bench!(
            c,
            "dpbusd",
            12,
            "vpdpbusd ymm0, ymm15, ymm15",
            "vpdpbusd ymm1, ymm15, ymm15",
            "vpdpbusd ymm2, ymm15, ymm15",
            "vpdpbusd ymm3, ymm15, ymm15",
            "vpdpbusd ymm4, ymm15, ymm15",
            "vpdpbusd ymm5, ymm15, ymm15",
            "vpdpbusd ymm6, ymm15, ymm15",
            "vpdpbusd ymm7, ymm15, ymm15",
            "vpdpbusd ymm8, ymm15, ymm15",
            "vpdpbusd ymm9, ymm15, ymm15",
            "vpdpbusd ymm10, ymm15, ymm15",
            "vpdpbusd ymm11, ymm15, ymm15"
        );
        bench!(
            c,
            "cvt",
            12,
            "vcvtdq2ps ymm0, ymm15",
            "vcvtdq2ps ymm1, ymm15",
            "vcvtdq2ps ymm2, ymm15",
            "vcvtdq2ps ymm3, ymm15",
            "vcvtdq2ps ymm4, ymm15",
            "vcvtdq2ps ymm5, ymm15",
            "vcvtdq2ps ymm6, ymm15",
            "vcvtdq2ps ymm7, ymm15",
            "vcvtdq2ps ymm8, ymm15",
            "vcvtdq2ps ymm9, ymm15",
            "vcvtdq2ps ymm10, ymm15",
            "vcvtdq2ps ymm11, ymm15"
        );
        bench!(
            c,
            "dpbusd + fma",
            6,
            "vpdpbusd ymm0, ymm15, ymm15",
            "vfmadd231ps ymm1, ymm15, ymm15",
            "vpdpbusd ymm2, ymm15, ymm15",
            "vfmadd231ps ymm3, ymm15, ymm15",
            "vpdpbusd ymm4, ymm15, ymm15",
            "vfmadd231ps ymm5, ymm15, ymm15",
            "vpdpbusd ymm6, ymm15, ymm15",
            "vfmadd231ps ymm7, ymm15, ymm15",
            "vpdpbusd ymm8, ymm15, ymm15",
            "vfmadd231ps ymm9, ymm15, ymm15",
            "vpdpbusd ymm10, ymm15, ymm15",
            "vfmadd231ps ymm11, ymm15, ymm15"
        );
        bench!(
            c,
            "dpbusd + cvt + fma",
            4,
            "vpdpbusd ymm0, ymm15, ymm15",
            "vcvtdq2ps ymm1, ymm15",
            "vfmadd231ps ymm2, ymm15, ymm15",
            "vpdpbusd ymm3, ymm15, ymm15",
            "vcvtdq2ps ymm4, ymm15",
            "vfmadd231ps ymm5, ymm15, ymm15",
            "vpdpbusd ymm6, ymm15, ymm15",
            "vcvtdq2ps ymm7, ymm15",
            "vfmadd231ps ymm8, ymm15, ymm15",
            "vpdpbusd ymm9, ymm15, ymm15",
            "vcvtdq2ps ymm10, ymm15",
            "vfmadd231ps ymm11, ymm15, ymm15"
        );
        bench!(
            c,
            "zmm dpbusd + cvt + fma",
            4,
            "vpdpbusd zmm0, zmm15, zmm15",
            "vcvtdq2ps zmm1, zmm15",
            "vfmadd231ps zmm2, zmm15, zmm15",
            "vpdpbusd zmm3, zmm15, zmm15",
            "vcvtdq2ps zmm4, zmm15",
            "vfmadd231ps zmm5, zmm15, zmm15",
            "vpdpbusd zmm6, zmm15, zmm15",
            "vcvtdq2ps zmm7, zmm15",
            "vfmadd231ps zmm8, zmm15, zmm15",
            "vpdpbusd zmm9, zmm15, zmm15",
            "vcvtdq2ps zmm10, zmm15",
            "vfmadd231ps zmm11, zmm15, zmm15"
        );
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("x86-64 only");
}
