//! Elementwise kernels at every level against the scalar references: exact ops bit for
//! bit, transcendental ones within their stated ulp bounds.

mod common;

use common::{bits_eq, levels, Failures, Rng, SIZES};
use vtpu_kernels::tolerance::{
    check_close, check_ulps, silu_bound, swiglu_bound, EXP_MAX_ULP, RSQRT_MAX_ULP,
};
use vtpu_kernels::{scalar, BinOp, Kernels};

type BinFn = fn(Kernels, &mut [f32], &[f32], &[f32]) -> Result<(), vtpu_kernels::KernelError>;

const BINARY: [(&str, BinOp, BinFn); 4] = [
    ("add", BinOp::Add, Kernels::add),
    ("sub", BinOp::Sub, Kernels::sub),
    ("mul", BinOp::Mul, Kernels::mul),
    ("max", BinOp::Max, Kernels::max),
];

/// Special values mixed into exact-op inputs: zeros of both signs, infinities, NaN,
/// subnormals, extremes.
const SPECIALS: [f32; 9] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1e-45,
    -1e-40,
    f32::MAX,
    f32::MIN_POSITIVE,
];

fn with_specials(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.below(8) == 0 {
                SPECIALS[rng.below(SPECIALS.len())]
            } else {
                rng.mixed()
            }
        })
        .collect()
}

#[test]
fn binary_ops_are_bit_exact() {
    let mut rng = Rng::new(1);
    for k in levels() {
        for &n in SIZES {
            let (a, b) = (with_specials(&mut rng, n), with_specials(&mut rng, n));
            for (name, op, f) in BINARY {
                let mut want = vec![0.0; n];
                scalar::binary(op, &mut want, &a, &b);
                let mut got = vec![7.0; n];
                f(k, &mut got, &a, &b).unwrap();
                bits_eq(&format!("{name} {:?} n={n}", k.level()), &got, &want).unwrap();
                // In place: d = d op a.
                let mut d = a.clone();
                let assign = match op {
                    BinOp::Add => Kernels::add_assign,
                    BinOp::Sub => Kernels::sub_assign,
                    BinOp::Mul => Kernels::mul_assign,
                    BinOp::Max => Kernels::max_assign,
                };
                assign(k, &mut d, &b).unwrap();
                bits_eq(&format!("{name}_assign {:?} n={n}", k.level()), &d, &want).unwrap();
            }
        }
    }
}

#[test]
fn max_follows_maxps_semantics() {
    for k in levels() {
        let a = [0.0, -0.0, f32::NAN, 1.0, 2.0];
        let b = [-0.0, 0.0, 1.0, f32::NAN, 1.0];
        let mut d = [0.0; 5];
        k.max(&mut d, &a, &b).unwrap();
        assert_eq!(d[0].to_bits(), (-0.0f32).to_bits(), "{:?}", k.level());
        assert_eq!(d[1].to_bits(), 0.0f32.to_bits());
        assert_eq!(d[2], 1.0);
        assert!(d[3].is_nan());
        assert_eq!(d[4], 2.0);
    }
}

#[test]
fn fma_and_scale_are_bit_exact() {
    let mut rng = Rng::new(2);
    for k in levels() {
        for &n in SIZES {
            let (a, b, d0) = (rng.vec_mixed(n), rng.vec_mixed(n), rng.vec_mixed(n));
            let mut want = d0.clone();
            scalar::fma(&mut want, &a, &b);
            let mut got = d0.clone();
            k.fma(&mut got, &a, &b).unwrap();
            bits_eq(&format!("fma {:?} n={n}", k.level()), &got, &want).unwrap();

            let s = rng.mixed();
            let mut want = vec![0.0; n];
            scalar::scale(&mut want, &a, s);
            let mut got = vec![0.0; n];
            k.scale(&mut got, &a, s).unwrap();
            bits_eq(&format!("scale {:?} n={n}", k.level()), &got, &want).unwrap();
            let mut got = a.clone();
            k.scale_assign(&mut got, s).unwrap();
            bits_eq(&format!("scale_assign {:?} n={n}", k.level()), &got, &want).unwrap();
        }
    }
}

/// Inputs for exp: the whole interesting range (overflow, subnormal results, underflow)
/// plus specials.
fn exp_inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 10 {
            0 => [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                88.72,
                88.73,
                -87.5,
                -103.9,
                -104.5,
            ][rng.below(10)],
            1..=3 => rng.uniform(-110.0, 95.0),
            4 => rng.uniform(-104.0, -87.0), // subnormal results
            _ => rng.uniform(-10.0, 10.0),
        })
        .collect()
}

#[test]
fn exp_within_ulp_bound() {
    let mut rng = Rng::new(3);
    let mut fails = Failures::default();
    for k in levels() {
        for &n in SIZES.iter().chain(&[4096]) {
            let a = exp_inputs(&mut rng, n);
            let mut got = vec![0.0; n];
            k.exp(&mut got, &a).unwrap();
            let mut inplace = a.clone();
            k.exp_assign(&mut inplace).unwrap();
            fails.check(bits_eq("exp_assign vs exp", &inplace, &got));
            for (&x, &g) in a.iter().zip(&got) {
                fails.check(check_ulps(
                    &format!("exp({x:e}) {:?}", k.level()),
                    g,
                    scalar::exp_f32(x),
                    EXP_MAX_ULP,
                ));
            }
        }
    }
    fails.finish("exp");
}

#[test]
fn silu_and_swiglu_within_bounds() {
    let mut rng = Rng::new(4);
    let mut fails = Failures::default();
    for k in levels() {
        for &n in SIZES.iter().chain(&[4096]) {
            let g: Vec<f32> = (0..n)
                .map(|i| match i % 8 {
                    0 => rng.uniform(-120.0, 120.0),
                    1 => [f32::INFINITY, 0.0, -0.0, -87.0, -90.0, 1e-30][rng.below(6)],
                    _ => rng.uniform(-8.0, 8.0),
                })
                .collect();
            let up = rng.vec_mixed(n);
            let mut got = vec![0.0; n];
            k.silu(&mut got, &g).unwrap();
            let mut inplace = g.clone();
            k.silu_assign(&mut inplace).unwrap();
            fails.check(bits_eq("silu_assign vs silu", &inplace, &got));
            for (&x, &y) in g.iter().zip(&got) {
                let want = scalar::silu_f32(x);
                fails.check(check_close(
                    &format!("silu({x:e}) {:?}", k.level()),
                    y,
                    want,
                    silu_bound(x, want),
                ));
            }
            let mut sw = vec![0.0; n];
            k.swiglu(&mut sw, &g, &up).unwrap();
            let mut want = vec![0.0; n];
            scalar::swiglu(&mut want, &g, &up);
            let mut inplace = g.clone();
            k.swiglu_assign(&mut inplace, &up).unwrap();
            fails.check(bits_eq("swiglu_assign vs swiglu", &inplace, &sw));
            for i in 0..n {
                let what = format!("swiglu({:e}, {:e}) {:?}", g[i], up[i], k.level());
                fails.check(check_close(
                    &what,
                    sw[i],
                    want[i],
                    swiglu_bound(g[i], up[i], want[i]),
                ));
            }
        }
    }
    fails.finish("silu/swiglu");
}

#[test]
fn silu_of_minus_inf_is_nan_like_the_reference() {
    for k in levels() {
        let mut d = [0.0];
        k.silu(&mut d, &[f32::NEG_INFINITY]).unwrap();
        assert!(
            d[0].is_nan() && scalar::silu_f32(f32::NEG_INFINITY).is_nan(),
            "{:?}",
            k.level()
        );
    }
}

#[test]
fn rsqrt_within_ulp_bound() {
    let mut rng = Rng::new(5);
    let mut fails = Failures::default();
    for k in levels() {
        for &n in SIZES.iter().chain(&[4096]) {
            let a: Vec<f32> = (0..n)
                .map(|i| match i % 8 {
                    0 => [0.0, -0.0, f32::INFINITY, -1.0, f32::NAN, 1e-45, f32::MAX][rng.below(7)],
                    1 | 2 => rng.any_positive(),
                    _ => rng.uniform(1e-6, 1e3),
                })
                .collect();
            let mut got = vec![0.0; n];
            k.rsqrt(&mut got, &a).unwrap();
            let mut inplace = a.clone();
            k.rsqrt_assign(&mut inplace).unwrap();
            fails.check(bits_eq("rsqrt_assign vs rsqrt", &inplace, &got));
            for (&x, &g) in a.iter().zip(&got) {
                fails.check(check_ulps(
                    &format!("rsqrt({x:e}) {:?}", k.level()),
                    g,
                    scalar::rsqrt_f32(x),
                    RSQRT_MAX_ULP,
                ));
            }
        }
    }
    fails.finish("rsqrt");
}

#[test]
fn free_functions_use_the_process_level() {
    // Whatever the process-wide level is, the free functions must give a correct answer.
    let a = [1.0, 2.0, 3.0];
    let b = [0.5, 0.25, -1.0];
    let mut d = [0.0; 3];
    vtpu_kernels::add(&mut d, &a, &b).unwrap();
    assert_eq!(d, [1.5, 2.25, 2.0]);
    vtpu_kernels::mul(&mut d, &a, &b).unwrap();
    assert_eq!(d, [0.5, 0.5, -3.0]);
    assert_eq!(vtpu_kernels::dot(&a, &b).unwrap(), -2.0);
}
