//! Micro benchmark of the quantized prefill GEMM (m = 128 activation rows unless given),
//! one thread.
//!
//! `cargo run --release -p vtpu-kernels --example prefill_bench [reps] [type filter] [m]`
//!
//! For each weight type and the SmolLM2 / Qwen2.5 shapes, the best time (of `reps`
//! samples of >= 20 ms each; the minimum, as the machine is shared) of one
//! `matmul_bt_rows` call at the AVX-512 VNNI implementation, in GOP/s (2 ops per MAC,
//! activation quantization included), hot (the same weights every call) and cold (weights
//! streamed from DRAM). Validated bit for bit against the scalar spec first.

use std::hint::black_box;
use std::time::Instant;

use vtpu_kernels::quant::{matmul_bt_rows_with, QuantImpl};
use vtpu_kernels::QuantType;

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// The best seconds per call of `reps` samples, each timing back-to-back calls for at
/// least 20 ms.
fn best_hot(reps: usize, mut call: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut calls = 0;
        while t.elapsed().as_secs_f64() < 0.02 {
            call();
            calls += 1;
        }
        best = best.min(t.elapsed().as_secs_f64() / calls as f64);
    }
    best
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let imp = QuantImpl::Avx512Vnni;
    if !imp.is_supported() {
        println!("AVX-512 VNNI not supported: nothing to measure");
        return;
    }
    let m: usize = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let types = [
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q4K,
        QuantType::Q6K,
    ];
    for qtype in types.into_iter().filter(|t| t.name().contains(&filter)) {
        let shapes: &[(usize, usize)] = if qtype.block_elems() == 256 {
            &[(576, 1536), (896, 4864)]
        } else {
            &[(1536, 576), (576, 1536), (576, 576)]
        };
        for &(n, k) in shapes {
            let vals: Vec<f32> = (0..n * k).map(|_| rng.f32() * 0.1).collect();
            let row_bytes = qtype.row_bytes(k).expect("whole blocks");
            let mut w = vec![0u8; n * row_bytes];
            for (src, dst) in vals.chunks_exact(k).zip(w.chunks_exact_mut(row_bytes)) {
                if vtpu_kernels::quantize_row(qtype, src, dst).is_err() {
                    // No reference quantizer (k-quants): random bytes, sane f16 scales.
                    for b in dst.iter_mut() {
                        *b = rng.next() as u8;
                    }
                    let be = qtype.block_bytes();
                    for blk in dst.chunks_exact_mut(be) {
                        let at = if qtype == QuantType::Q6K { be - 2 } else { 0 };
                        blk[at..at + 2].copy_from_slice(&0x2000u16.to_le_bytes());
                        if qtype != QuantType::Q6K {
                            blk[2..4].copy_from_slice(&0x1800u16.to_le_bytes());
                        }
                    }
                }
            }
            let a: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
            let (mut got, mut want) = (vec![0f32; m * n], vec![0f32; m * n]);
            matmul_bt_rows_with(imp, &mut got, &a, qtype, &w, m, n, k, 0, n).expect("shapes");
            matmul_bt_rows_with(QuantImpl::Scalar, &mut want, &a, qtype, &w, m, n, k, 0, n)
                .expect("shapes");
            let same = got
                .iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits());
            assert!(
                same,
                "{qtype} {n}x{k}: not bit-identical to the scalar spec"
            );
            let best = best_hot(reps, || {
                matmul_bt_rows_with(imp, &mut got, &a, qtype, &w, m, n, k, 0, n).expect("shapes");
                black_box(&got);
            });
            let gops = 2.0 * (m * n * k) as f64 / best / 1e9;
            // Cold: the same call rotating through copies of the weights totalling
            // >= 256 MiB, so each call streams them from DRAM (a model's layers do not
            // fit in the last-level cache either).
            let copies = (256usize << 20).div_ceil(w.len());
            let cold: Vec<u8> = w.iter().copied().cycle().take(copies * w.len()).collect();
            let mut best_cold = f64::INFINITY;
            for _ in 0..reps {
                let t = Instant::now();
                let mut calls = 0;
                while t.elapsed().as_secs_f64() < 0.02 || calls < copies {
                    let c = &cold[(calls % copies) * w.len()..][..w.len()];
                    matmul_bt_rows_with(imp, &mut got, &a, qtype, c, m, n, k, 0, n)
                        .expect("shapes");
                    black_box(&got);
                    calls += 1;
                }
                best_cold = best_cold.min(t.elapsed().as_secs_f64() / calls as f64);
            }
            let gops_cold = 2.0 * (m * n * k) as f64 / best_cold / 1e9;
            // The same weights in the 8-row layout the model loader repacks Q4_0 / Q5_0
            // (and a Q8_0 output matrix) into, hot: the prefill kernels rebuild each
            // block from it as they pack their panels.
            let r8 = vtpu_kernels::quant::r8::r8_supported(qtype).then(|| {
                let mut w8 = vec![0u8; w.len()];
                vtpu_kernels::quant::r8::repack_r8(qtype, &w, n, k, &mut w8).expect("repack");
                let t8 = qtype.r8().expect("an 8-row type");
                let mut g8 = vec![0f32; m * n];
                matmul_bt_rows_with(imp, &mut g8, &a, t8, &w8, m, n, k, 0, n).expect("shapes");
                // (`got` has accumulated the timed calls: compare with the spec's single
                // call, which the first call matched bit for bit.)
                assert!(
                    g8.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{qtype} {n}x{k}: the 8-row layout changed the bits"
                );
                let best8 = best_hot(reps, || {
                    matmul_bt_rows_with(imp, &mut g8, &a, t8, &w8, m, n, k, 0, n).expect("shapes");
                    black_box(&g8);
                });
                2.0 * (m * n * k) as f64 / best8 / 1e9
            });
            println!(
                "{:<5} m={m} {n:>5}x{k:<5} {:>8.1} us {gops:>7.1} GOP/s hot, {:>8.1} us {gops_cold:>7.1} GOP/s cold{}",
                qtype.name(),
                best * 1e6,
                best_cold * 1e6,
                r8.map_or(String::new(), |g| format!(", {g:>7.1} GOP/s hot in the 8-row layout"))
            );
        }
    }
}
