//! Micro benchmark of `matmul_bt` (host figures, measured on this machine).
//!
//! `cargo run --release -p vtpu-kernels --example kernel_bench [runs]`
//!
//! For each level (AVX-512, AVX2) and weight dtype (`bf16p`: bf16 weights in the
//! bf16-products mode, where AVX-512 BF16 runs it): GEMV (m = 1, decode) on the weight
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
//!
//! Decode attention (`attn` section; `... kernel_bench 11 attn`): one DTATTN call as a
//! decode step makes it, at the detected level and the scalar specification.
//!
//! Quantized weights (`quant` section; `... kernel_bench 11 quant`): for each GGML type,
//! implementation (AVX-512 VNNI / BW, AVX2) and shape, GEMV (m = 1) hot and cold and
//! m = 32 hot, in GB/s of quantized weight bytes (the time includes quantizing the
//! activations, as every call does). The SmolLM2 / Qwen2.5 shapes have k = 576 or 896,
//! not multiples of the k-quants' 256 (llama-quantize falls back to Q5_0 / Q8_0 for
//! such tensors), so the k-quants run on the ffn_down shapes 576x1536 and 896x4864.
//! Results are validated bit for bit against the scalar specification first.

use std::hint::black_box;

use half::{bf16, f16};
use vtpu_kernels::quant::{matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::{scalar, KernelLevel, Kernels, QuantType, Weights};

mod bench_util;
// COLD_BYTES: the `cold` GEMV rotates through (and the DRAM baseline reads) this many bytes.
use bench_util::{clock_name, median_secs, Rng, COLD_BYTES};

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
    let products = k.bf16_products_active() && matches!(b, Weights::BF16(_));
    for &i in &rows {
        let mut want = vec![0.0; n];
        scalar::matmul_bt_rows(&mut want, &a[i * kk..(i + 1) * kk], b, 1, kk, 0, n);
        for j in 0..n {
            let abs: f64 = (0..kk)
                .map(|p| (a[i * kk + p] as f64 * b.get_f32(j * kk + p).unwrap() as f64).abs())
                .sum();
            let abs_b: f64 = (0..kk)
                .map(|p| (b.get_f32(j * kk + p).unwrap() as f64).abs())
                .sum();
            let bound = if products {
                vtpu_kernels::tolerance::bf16_products_bound(kk, abs, abs_b)
            } else {
                vtpu_kernels::tolerance::dot_bound(kk, abs)
            };
            let err = (c[i * n + j] as f64 - want[j] as f64).abs();
            assert!(
                err <= bound,
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

    if "attn".contains(only.as_str()) {
        attn_section(runs, &mut rng);
    }

    if "quant".contains(only.as_str()) {
        // Optional third / fourth arguments: only these type names / implementations
        // (substrings, e.g. `q4_0`, `Vnni`).
        let types = std::env::args().nth(3).unwrap_or_default();
        let imps = std::env::args().nth(4).unwrap_or_default();
        quant_section(runs, &mut rng, &types, &imps);
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
            let with_products = k.with_bf16_products(true).bf16_products_active();
            for dtype in ["f32", "f16", "bf16", "bf16p"] {
                if dtype == "bf16p" && !with_products {
                    continue;
                }
                let k = k.with_bf16_products(dtype == "bf16p");
                let w = Owned::new(if dtype == "bf16p" { "bf16" } else { dtype }, &vals);
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
                let many: Vec<Owned> = (0..copies)
                    .map(|_| Owned::new(if dtype == "bf16p" { "bf16" } else { dtype }, &vals))
                    .collect();
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
            // bf16p: bf16 weights with bf16 products (AVX-512 BF16), where they run.
            let with_products = k.with_bf16_products(true).bf16_products_active();
            for dtype in ["f32", "f16", "bf16", "bf16p"] {
                if dtype == "bf16p" && !with_products {
                    continue;
                }
                let k = k.with_bf16_products(dtype == "bf16p");
                let w = Owned::new(if dtype == "bf16p" { "bf16" } else { dtype }, &vals);
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

/// `n x k` random weights of `qtype`: reference-quantized random values where a
/// quantizer exists, else random quant bytes with ordinary f16 scales.
fn quant_weights(rng: &mut Rng, qtype: QuantType, n: usize, k: usize) -> Vec<u8> {
    let row_bytes = qtype.row_bytes(k).expect("k is a whole number of blocks");
    let mut w = vec![0u8; n * row_bytes];
    let vals: Vec<f32> = (0..k).map(|_| rng.f32()).collect();
    if vtpu_kernels::quantize_row(qtype, &vals, &mut w[..row_bytes]).is_ok() {
        // One quantized row repeated (bandwidth does not care) with bytes perturbed so
        // rows differ; scales stay ordinary.
        for r in 1..n {
            w.copy_within(0..row_bytes, r * row_bytes);
        }
        return w;
    }
    for (i, b) in w.iter_mut().enumerate() {
        *b = (rng.f32().to_bits() >> 8) as u8 ^ i as u8;
    }
    let bb = qtype.block_bytes();
    let d_at = if qtype == QuantType::Q6K {
        vec![208]
    } else {
        vec![0, 2]
    };
    for blk in w.chunks_exact_mut(bb) {
        for &at in &d_at {
            let d = half::f16::from_f32(0.001 + 0.01 * rng.f32().abs());
            blk[at..at + 2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
    }
    w
}

/// Quantized matmul: GB/s of weight bytes per type, implementation and shape.
/// Decode attention (`attn` section): one call of `attention::attention` with an f16
/// cache, as a decode step makes it per attention part (the query rows of one token's
/// GQA group over `s` cached keys), at the detected level against the scalar
/// specification; bits checked equal first. Per call and per (query row, key).
fn attn_section(runs: usize, rng: &mut Rng) {
    use vtpu_kernels::attention::{attention, attention_scalar, AttnShape, KvRows};
    println!(
        "\ndecode attention, f16 cache: us per call (ns per query row x key), median of {runs}"
    );
    println!("rows  hd  keys      simd (ns/row-key)    scalar spec");
    for (rows, hd, s) in [
        (1usize, 64usize, 256usize),
        (3, 64, 96),
        (3, 64, 256),
        (7, 64, 256),
        (2, 128, 256),
    ] {
        let q: Vec<f32> = (0..rows * hd).map(|_| rng.f32()).collect();
        let k: Vec<f16> = (0..s * hd).map(|_| f16::from_f32(rng.f32())).collect();
        let v: Vec<f16> = (0..s * hd).map(|_| f16::from_f32(rng.f32())).collect();
        let shape = AttnShape {
            rows,
            hd,
            s,
            per: rows,
        };
        let (mut a, mut b) = (vec![0f32; rows * hd], vec![0f32; rows * hd]);
        attention(&mut a, &q, KvRows::F16(&k), KvRows::F16(&v), shape, true).expect("shape");
        attention_scalar(&mut b, &q, KvRows::F16(&k), KvRows::F16(&v), shape).expect("shape");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "attention {rows}x{hd} over {s}: not bit-identical to the spec"
        );
        let simd = median_secs(runs, || {
            attention(&mut a, &q, KvRows::F16(&k), KvRows::F16(&v), shape, true).expect("shape");
            black_box(&a);
        });
        let spec = median_secs(runs, || {
            attention_scalar(&mut b, &q, KvRows::F16(&k), KvRows::F16(&v), shape).expect("shape");
            black_box(&b);
        });
        println!(
            "{rows:>4} {hd:>3} {s:>5} {:>9.2} ({:>5.1}) {:>12.2}",
            simd * 1e6,
            simd * 1e9 / (rows * s) as f64,
            spec * 1e6
        );
    }
}

fn quant_section(runs: usize, rng: &mut Rng, type_filter: &str, imp_filter: &str) {
    let imps: Vec<QuantImpl> = [QuantImpl::Avx512Vnni, QuantImpl::Avx512Bw, QuantImpl::Avx2]
        .into_iter()
        .filter(|i| i.is_supported() && format!("{i:?}").contains(imp_filter))
        .collect();
    let small = [(576usize, 576usize), (1536, 576), (49152, 576), (4864, 896)];
    let kshapes = [(576usize, 1536usize), (896, 4864)];
    let types = [
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ];
    println!(
        "\n== quantized matmul (GB/s of weight bytes; m = 32 also in GOP/s, 2 ops per MAC) =="
    );
    println!(
        "{:<11} {:<5} {:>11} {:>9} {:>10} {:>10} {:>10} {:>9}",
        "impl", "type", "n x k", "MiB", "m=1 hot", "m=1 cold", "m=32 hot", "GOP/s"
    );
    for qtype in types.into_iter().filter(|t| t.name().contains(type_filter)) {
        let shapes: &[(usize, usize)] = if qtype.block_elems() == 256 {
            &kshapes
        } else {
            &small
        };
        for &(n, k) in shapes {
            let w = quant_weights(rng, qtype, n, k);
            let bytes = w.len() as f64;
            let a32: Vec<f32> = (0..32 * k).map(|_| rng.f32()).collect();
            let copies = (COLD_BYTES as f64 / bytes).ceil() as usize;
            let many: Vec<Vec<u8>> = (0..copies).map(|_| w.clone()).collect();
            for &imp in &imps {
                // Validate: bit-identical to the scalar spec on the first rows.
                let rows = n.min(8);
                let (mut got, mut want) = (vec![0f32; 2 * rows], vec![0f32; 2 * rows]);
                matmul_bt_rows_with(imp, &mut got, &a32[..2 * k], qtype, &w, 2, n, k, 0, rows)
                    .expect("valid shapes");
                matmul_bt_rows_with(
                    QuantImpl::Scalar,
                    &mut want,
                    &a32[..2 * k],
                    qtype,
                    &w,
                    2,
                    n,
                    k,
                    0,
                    rows,
                )
                .expect("valid shapes");
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{imp:?} {qtype} {n}x{k}: not bit-identical to the scalar spec"
                );
                let mut c1 = vec![0f32; n];
                let hot1 = median_secs(runs, || {
                    matmul_bt_rows_with(imp, &mut c1, &a32[..k], qtype, &w, 1, n, k, 0, n).unwrap();
                    black_box(&c1);
                });
                let mut idx = 0;
                let cold1 = median_secs(runs, || {
                    let wi = &many[idx % copies];
                    matmul_bt_rows_with(imp, &mut c1, &a32[..k], qtype, wi, 1, n, k, 0, n).unwrap();
                    idx += 1;
                    black_box(&c1);
                });
                let mut c32 = vec![0f32; 32 * n];
                let hot32 = median_secs(runs, || {
                    matmul_bt_rows_with(imp, &mut c32, &a32, qtype, &w, 32, n, k, 0, n).unwrap();
                    black_box(&c32);
                });
                println!(
                    "{:<11} {:<5} {:>11} {:>9.2} {:>10.1} {:>10.1} {:>10.1} {:>9.1}",
                    format!("{imp:?}"),
                    qtype.name(),
                    format!("{n}x{k}"),
                    bytes / (1 << 20) as f64,
                    bytes / hot1 / 1e9,
                    bytes / cold1 / 1e9,
                    bytes / hot32 / 1e9,
                    2.0 * 32.0 * (n * k) as f64 / hot32 / 1e9
                );
            }
        }
    }
}
