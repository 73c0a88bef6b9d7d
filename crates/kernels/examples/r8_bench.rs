//! Decode GEMV (m = 1) on R8-repacked weights vs the ggml layout (host figures).
//!
//! `cargo run --release -p vtpu-kernels --example r8_bench [runs] [type filter] [hot]`
//! (`hot`: skip the cold figures, which copy 1 GiB per shape)
//!
//! For Q8_0, Q4_0 and Q5_0 and the SmolLM2 / Qwen2.5 shapes `n x k`: GB/s of weight
//! bytes for the existing kernel on the ggml layout (`matmul_bt_rows_with(Avx512Vnni)`)
//! and the R8 kernel on the repacked copy, in the same run:
//! - `hot`: the same matrix every call (cache-resident when it fits);
//! - `cold`: rotating through copies totalling >= 1 GiB, so weights come from DRAM.
//!
//! Both timings include quantizing the activation row (every call does). Each figure is
//! the median of `runs` samples after warm-up, a sample timing back-to-back calls for
//! at least 2 ms of this thread's CPU time (`BENCH_WALL=1` for wall time). The R8 result is
//! validated bit for bit against the old kernel (itself tested against the scalar
//! specification) over all outputs before timing.

use std::hint::black_box;

use vtpu_kernels::quant::r8::{gemv_r8_for_tests, repack_r8};
use vtpu_kernels::quant::{matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::{quantize_row, QuantType};

/// Bytes of weight copies the `cold` figures rotate through.
mod bench_util;
use bench_util::{median_secs, use_wall, Rng, COLD_BYTES};

/// `n x k` weights: 16 reference-quantized random rows, repeated.
fn weights(rng: &mut Rng, qtype: QuantType, n: usize, k: usize) -> Vec<u8> {
    let rb = qtype.row_bytes(k).expect("whole blocks");
    let mut w = vec![0u8; n * rb];
    for r in 0..16.min(n) {
        let vals: Vec<f32> = (0..k).map(|_| rng.f32()).collect();
        quantize_row(qtype, &vals, &mut w[r * rb..(r + 1) * rb]).expect("quantize");
    }
    for r in 16..n {
        w.copy_within((r % 16) * rb..(r % 16 + 1) * rb, r * rb);
    }
    w
}

/// Hot and cold seconds per call of `gemv(c, weights)`.
fn time_pair(
    runs: usize,
    w: &[u8],
    c: &mut [f32],
    mut gemv: impl FnMut(&mut [f32], &[u8]),
) -> (f64, f64) {
    let hot = median_secs(runs, || {
        gemv(c, w);
        black_box(&c);
    });
    if std::env::args().nth(3).is_some_and(|a| a == "hot") {
        return (hot, f64::NAN);
    }
    let copies = COLD_BYTES.div_ceil(w.len());
    let many: Vec<Vec<u8>> = (0..copies).map(|_| w.to_vec()).collect();
    let mut i = 0;
    let cold = median_secs(runs, || {
        gemv(c, &many[i % copies]);
        i += 1;
        black_box(&c);
    });
    (hot, cold)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let filter = std::env::args().nth(2).unwrap_or_default();
    if !QuantImpl::Avx512Vnni.is_supported() {
        println!("no AVX-512 VNNI on this CPU: nothing to compare");
        return;
    }
    println!(
        "R8 decode GEMV (m = 1) vs ggml layout, AVX-512 VNNI, GB/s of weight bytes, median of {runs}, {}",
        if use_wall() { "wall clock" } else { "thread CPU time" }
    );
    println!(
        "{:<5} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "type", "n x k", "MiB", "old hot", "r8 hot", "old cold", "r8 cold", "x hot", "x cold"
    );
    let mut rng = Rng(42);
    let shapes = [
        // One sentron's share of SmolLM2's per-layer products (kv head, wo / w_down
        // rows, w_gate rows), then whole matrices.
        (64usize, 576usize),
        (288, 576),
        (288, 1536),
        (768, 576),
        (576, 576),
        (1536, 576),
        (4864, 896),
        (896, 4864),
        (49152, 576),
        (151936, 896),
    ];
    for qtype in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q5_0] {
        if !qtype.name().contains(filter.as_str()) {
            continue;
        }
        for &(n, k) in &shapes {
            if n == 151936 && qtype != QuantType::Q8_0 {
                continue; // the tied Qwen2.5 embedding is Q8_0 in the models we run
            }
            let w = weights(&mut rng, qtype, n, k);
            let mut r8 = vec![0u8; w.len()];
            repack_r8(qtype, &w, n, k, &mut r8).expect("repack");
            let a: Vec<f32> = (0..k).map(|_| rng.f32()).collect();
            let old = |c: &mut [f32], w: &[u8]| {
                matmul_bt_rows_with(QuantImpl::Avx512Vnni, c, &a, qtype, w, 1, n, k, 0, n)
                    .expect("old gemv");
            };
            let new = |c: &mut [f32], w: &[u8]| {
                gemv_r8_for_tests(qtype, c, &a, w, k, n).expect("r8 gemv");
            };
            let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
            old(&mut want, &w);
            new(&mut got, &r8);
            if let Some(j) = (0..n).find(|&j| got[j].to_bits() != want[j].to_bits()) {
                println!(
                    "{qtype} {n}x{k}: R8 output {j} = {} but the old kernel gives {}",
                    got[j], want[j]
                );
            }
            let mut c = vec![0f32; n];
            let (oh, oc) = time_pair(runs, &w, &mut c, old);
            let (nh, nc) = time_pair(runs, &r8, &mut c, new);
            let bytes = w.len() as f64;
            println!(
                "{:<5} {:>12} {:>8.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.2} {:>6.2}",
                qtype.name(),
                format!("{n}x{k}"),
                bytes / (1 << 20) as f64,
                bytes / oh / 1e9,
                bytes / nh / 1e9,
                bytes / oc / 1e9,
                bytes / nc / 1e9,
                oh / nh,
                oc / nc
            );
        }
    }
}
