//! Rope: every level bit-identical to the scalar reference (same f64 table, same fused
//! rotation), and the reference itself close to the exact rotation computed in f64.

mod common;

use common::{bits_eq, levels, Rng};
use vtpu_kernels::tolerance::U;
use vtpu_kernels::{scalar, Kernels};

const SHAPES: &[(usize, usize)] = &[
    (1, 2),
    (1, 6),
    (3, 14),
    (2, 16),
    (4, 30),
    (2, 32),
    (9, 64),
    (3, 128),
    (2, 130),
    (1, 256),
    (2, 300),
];

fn reference(
    halfsplit: bool,
    x: &[f32],
    n_heads: usize,
    head_dim: usize,
    pos: usize,
    theta: f32,
) -> Vec<f32> {
    let mut y = x.to_vec();
    let half = head_dim / 2;
    let (mut cos, mut sin) = (vec![0.0; half], vec![0.0; half]);
    scalar::rope_table(&mut cos, &mut sin, head_dim, 0, pos, theta);
    if halfsplit {
        scalar::rope_halfsplit(&mut y, n_heads, head_dim, 0, &cos, &sin);
    } else {
        scalar::rope_interleaved(&mut y, n_heads, head_dim, 0, &cos, &sin);
    }
    y
}

#[test]
fn rope_bit_identical_across_levels() {
    let mut rng = Rng::new(30);
    for k in levels() {
        for &(n_heads, head_dim) in SHAPES {
            for pos in [0, 1, 17, 4095, 100_000] {
                for theta in [10_000.0, 1_000_000.0] {
                    let x = rng.vec_mixed(n_heads * head_dim);
                    let what = format!(
                        "{:?} heads={n_heads} head_dim={head_dim} pos={pos} theta={theta}",
                        k.level()
                    );

                    let mut y = x.clone();
                    k.rope_interleaved(&mut y, n_heads, head_dim, pos, theta)
                        .unwrap();
                    bits_eq(
                        &format!("interleaved {what}"),
                        &y,
                        &reference(false, &x, n_heads, head_dim, pos, theta),
                    )
                    .unwrap();

                    let mut y = x.clone();
                    k.rope_halfsplit(&mut y, n_heads, head_dim, pos, theta)
                        .unwrap();
                    bits_eq(
                        &format!("halfsplit {what}"),
                        &y,
                        &reference(true, &x, n_heads, head_dim, pos, theta),
                    )
                    .unwrap();

                    // With a precomputed table: the same bits.
                    let (mut cos, mut sin) = (vec![0.0; head_dim / 2], vec![0.0; head_dim / 2]);
                    k.rope_table(&mut cos, &mut sin, head_dim, pos, theta)
                        .unwrap();
                    let mut y = x.clone();
                    k.rope_interleaved_with(&mut y, n_heads, head_dim, &cos, &sin)
                        .unwrap();
                    bits_eq(
                        &format!("interleaved_with {what}"),
                        &y,
                        &reference(false, &x, n_heads, head_dim, pos, theta),
                    )
                    .unwrap();
                    let mut y = x.clone();
                    k.rope_halfsplit_with(&mut y, n_heads, head_dim, &cos, &sin)
                        .unwrap();
                    bits_eq(
                        &format!("halfsplit_with {what}"),
                        &y,
                        &reference(true, &x, n_heads, head_dim, pos, theta),
                    )
                    .unwrap();
                }
            }
        }
    }
}

/// The reference against the rotation done entirely in f64. The table follows llama.cpp:
/// the angle of pair i is `pos * scale^i` accumulated in f32 with `scale = powf(theta,
/// -2/Hd)` (one ulp from exact), so it is off by at most `(2 i + 2) u` relative (i
/// multiplications each rounding, and the scale's error raised to the i-th power); the
/// entries then add u each and the fused rotation rounds twice: each output is within
/// `(4 u + (2 i + 2) u angle) (|x0| + |x1|)` of exact.
#[test]
fn rope_reference_is_close_to_exact_rotation() {
    let mut rng = Rng::new(31);
    for &(n_heads, head_dim) in SHAPES {
        for pos in [0, 3, 511, 32_767] {
            let theta = 10_000.0f32;
            let x = rng.vec_mixed(n_heads * head_dim);
            let y = reference(false, &x, n_heads, head_dim, pos, theta);
            for h in 0..n_heads {
                for i in 0..head_dim / 2 {
                    let ang = pos as f64 * (theta as f64).powf(-2.0 * i as f64 / head_dim as f64);
                    let (s, c) = ang.sin_cos();
                    let (x0, x1) = (
                        x[h * head_dim + 2 * i] as f64,
                        x[h * head_dim + 2 * i + 1] as f64,
                    );
                    let (e0, e1) = (x0 * c - x1 * s, x0 * s + x1 * c);
                    let bound =
                        (4.0 * U + (2.0 * i as f64 + 2.0) * U * ang) * (x0.abs() + x1.abs());
                    let (g0, g1) = (
                        y[h * head_dim + 2 * i] as f64,
                        y[h * head_dim + 2 * i + 1] as f64,
                    );
                    assert!(
                        (g0 - e0).abs() <= bound && (g1 - e1).abs() <= bound,
                        "head {h} pair {i} pos {pos}: ({g0}, {g1}) vs ({e0}, {e1})"
                    );
                }
            }
        }
    }
}

#[test]
fn rope_conventions() {
    // head_dim 4, pos 1, theta 1: every pair rotates by 1 rad (freq = 1 for all i).
    let (c, s) = (1f64.cos() as f32, 1f64.sin() as f32);
    let x = [1.0, 2.0, 3.0, 4.0];
    let mut y = x;
    vtpu_kernels::rope_interleaved(&mut y, 1, 4, 1, 1.0).unwrap();
    let pairs = [(1.0f32, 2.0f32), (3.0, 4.0)];
    for (i, &(a, b)) in pairs.iter().enumerate() {
        assert!(
            (y[2 * i] - (a * c - b * s)).abs() < 1e-6
                && (y[2 * i + 1] - (a * s + b * c)).abs() < 1e-6
        );
    }
    let mut y = x;
    vtpu_kernels::rope_halfsplit(&mut y, 1, 4, 1, 1.0).unwrap();
    // Pairs (0, 2) and (1, 3).
    for (i, &(a, b)) in [(1.0f32, 3.0f32), (2.0, 4.0)].iter().enumerate() {
        assert!((y[i] - (a * c - b * s)).abs() < 1e-6 && (y[i + 2] - (a * s + b * c)).abs() < 1e-6);
    }
    // Position 0 is the identity.
    let mut y = x;
    Kernels::current()
        .rope_halfsplit(&mut y, 1, 4, 0, 10_000.0)
        .unwrap();
    assert_eq!(y, x);
}
