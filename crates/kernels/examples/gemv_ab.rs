// temporary A/B experiment
use std::time::Instant;
use vtpu_kernels::{Kernels, Weights, VARIANT};
use half::f16;
fn main() {
    let k = Kernels::current();
    let (n, kk) = (4864usize, 896usize);
    let dt = std::env::args().nth(1).unwrap_or("f32".into());
    let esz = if dt == "f32" { 4 } else { 2 };
    let copies = (1usize << 30) / (n * kk * esz);
    let w32: Vec<Vec<f32>> = if dt == "f32" { (0..copies).map(|c| (0..n*kk).map(|i| ((i + c) % 7) as f32).collect()).collect() } else { vec![] };
    let w16: Vec<Vec<f16>> = if dt != "f32" { (0..copies).map(|c| (0..n*kk).map(|i| f16::from_f32(((i + c) % 7) as f32)).collect()).collect() } else { vec![] };
    let a = vec![1.0f32; kk];
    let mut c = vec![0.0f32; n];
    let variants = [0usize, 1, 2, 4, 8];
    let mut res = vec![vec![]; variants.len()];
    let mut idx = 0;
    for _round in 0..21 {
        for (vi, &v) in variants.iter().enumerate() {
            VARIANT.store(v, std::sync::atomic::Ordering::Relaxed);
            let t = Instant::now();
            for _ in 0..8 {
                let w = if dt == "f32" { Weights::F32(&w32[idx % copies]) } else { Weights::F16(&w16[idx % copies]) };
                k.matmul_bt(&mut c, &a, w, 1, n, kk).unwrap();
                idx += 1;
            }
            res[vi].push((8 * n * kk * esz) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    for (vi, r) in res.iter_mut().enumerate() { r.sort_by(|a, b| a.total_cmp(b)); println!("{dt} variant {} median {:.1} GB/s p90 {:.1}", variants[vi], r[r.len()/2], r[r.len()*9/10]); }
}
