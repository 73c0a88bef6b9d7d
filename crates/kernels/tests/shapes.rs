//! Bad lengths and shapes return `ShapeMismatch` naming the op and the sizes, at every
//! level, without panicking and without touching the output.

mod common;

use common::levels;
use half::f16;
use vtpu_kernels::{KernelError, KernelLevel, Kernels, Weights};

/// Asserts a shape error for `op` whose message mentions every string in `needles`.
fn expect_err<T: std::fmt::Debug>(r: Result<T, KernelError>, op: &str, needles: &[&str]) {
    match r {
        Err(e @ KernelError::ShapeMismatch { .. }) => {
            let KernelError::ShapeMismatch {
                op: got_op,
                ref detail,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(got_op, op);
            let msg = e.to_string();
            assert!(msg.contains(op), "{msg}");
            for n in needles {
                assert!(detail.contains(n), "{op}: {detail:?} should mention {n:?}");
            }
        }
        Err(other) => panic!("{op}: unexpected error {other:?}"),
        Ok(v) => panic!("{op}: expected a shape error, got Ok({v:?})"),
    }
}

#[test]
fn elementwise_length_mismatches() {
    for k in levels() {
        let (a3, a4) = ([1.0f32; 3], [1.0f32; 4]);
        let mut d = [9.0f32; 3];
        expect_err(k.add(&mut d, &a4, &a3), "add", &["expected 3", "got 4"]);
        expect_err(k.sub(&mut d, &a3, &a4), "sub", &["b", "got 4"]);
        expect_err(k.mul(&mut d, &a4, &a4), "mul", &["a"]);
        expect_err(k.max(&mut d, &a3, &a4), "max", &["b"]);
        expect_err(k.add_assign(&mut d, &a4), "add_assign", &["got 4"]);
        expect_err(k.mul_assign(&mut d, &a4), "mul_assign", &["got 4"]);
        expect_err(k.fma(&mut d, &a3, &a4), "fma", &["b"]);
        expect_err(k.scale(&mut d, &a4, 2.0), "scale", &["got 4"]);
        expect_err(k.exp(&mut d, &a4), "exp", &["got 4"]);
        expect_err(k.silu(&mut d, &a4), "silu", &["got 4"]);
        expect_err(k.rsqrt(&mut d, &a4), "rsqrt", &["got 4"]);
        expect_err(k.swiglu(&mut d, &a3, &a4), "swiglu", &["up"]);
        expect_err(k.swiglu_assign(&mut d, &a4), "swiglu_assign", &["up"]);
        expect_err(k.dot(&a3, &a4), "dot", &["expected 3", "got 4"]);
        assert_eq!(d, [9.0; 3], "{:?}: output touched on error", k.level());
    }
}

#[test]
fn row_op_mismatches() {
    for k in levels() {
        let a = [1.0f32; 6];
        let mut d = [0.0f32; 2];
        expect_err(
            k.row_sum(&mut d, &a, 2, 4),
            "row_sum",
            &["expected 8", "got 6"],
        );
        expect_err(
            k.row_max(&mut d, &a, 3, 2),
            "row_max",
            &["d (rows)", "expected 3"],
        );
        expect_err(
            k.row_sumsq(&mut d, &a, usize::MAX, 2),
            "row_sumsq",
            &["overflows"],
        );
        let mut out = [0.0f32; 6];
        expect_err(
            k.rmsnorm(&mut out, &a, &[1.0; 2], 2, 3, 1e-5),
            "rmsnorm",
            &["weight", "expected 3", "got 2"],
        );
        expect_err(
            k.rmsnorm(&mut out[..4], &a, &[1.0; 3], 2, 3, 1e-5),
            "rmsnorm",
            &["out"],
        );
        let mut x = [0.0f32; 6];
        expect_err(
            k.softmax_rows(&mut x, 4, 2),
            "softmax_rows",
            &["expected 8"],
        );
    }
}

#[test]
fn matmul_mismatches() {
    for k in levels() {
        let (a, b) = ([1.0f32; 6], [1.0f32; 12]);
        let mut c = [0.0f32; 8];
        // m = 2, k = 3: a is 2 x 3; b 4 x 3; c 2 x 4.
        expect_err(
            k.matmul_bt(&mut c, &a, Weights::F32(&b[..9]), 2, 4, 3),
            "matmul_bt",
            &["b (n x k)", "expected 12", "got 9"],
        );
        expect_err(
            k.matmul_bt(&mut c, &a[..5], Weights::F32(&b), 2, 4, 3),
            "matmul_bt",
            &["a (m x k)", "got 5"],
        );
        expect_err(
            k.matmul_bt(&mut c[..7], &a, Weights::F32(&b), 2, 4, 3),
            "matmul_bt",
            &["c", "expected 8", "got 7"],
        );
        expect_err(
            k.matmul_bt(&mut c, &a, Weights::F32(&b), usize::MAX, 4, 3),
            "matmul_bt",
            &["overflows"],
        );
        let h = vec![f16::ZERO; 12];
        expect_err(
            k.matmul_bt_rows(&mut c, &a, Weights::F16(&h), 2, 4, 3, 3, 2),
            "matmul_bt_rows",
            &["[3, 2)"],
        );
        expect_err(
            k.matmul_bt_rows(&mut c, &a, Weights::F16(&h), 2, 4, 3, 2, 5),
            "matmul_bt_rows",
            &["[2, 5)", "[0, 4)"],
        );
        expect_err(
            k.matmul_bt_rows(&mut c, &a, Weights::F16(&h), 2, 4, 3, 1, 3),
            "matmul_bt_rows",
            &["c", "expected 4", "got 8"],
        );
        assert_eq!(c, [0.0; 8]);
        // The right shapes work.
        k.matmul_bt_rows(&mut c[..4], &a, Weights::F16(&h), 2, 4, 3, 1, 3)
            .unwrap();
    }
}

#[test]
fn rope_mismatches() {
    for k in levels() {
        let mut x = [1.0f32; 12];
        expect_err(
            k.rope_interleaved(&mut x, 2, 5, 0, 1e4),
            "rope_interleaved",
            &["even", "5"],
        );
        expect_err(
            k.rope_halfsplit(&mut x, 2, 8, 0, 1e4),
            "rope_halfsplit",
            &["expected 16", "got 12"],
        );
        let (cos, sin) = ([1.0f32; 3], [0.0f32; 2]);
        expect_err(
            k.rope_interleaved_with(&mut x, 2, 6, &cos, &sin),
            "rope_interleaved_with",
            &["sin", "expected 3", "got 2"],
        );
        expect_err(
            k.rope_halfsplit_with(&mut x, 3, 4, &cos, &sin),
            "rope_halfsplit_with",
            &["cos", "expected 2", "got 3"],
        );
        let (mut c2, mut s2) = ([0.0f32; 2], [0.0f32; 3]);
        expect_err(
            k.rope_table(&mut c2, &mut s2, 4, 1, 1e4),
            "rope_table",
            &["sin"],
        );
        assert_eq!(x, [1.0; 12]);
    }
}

#[test]
fn free_functions_report_errors_too() {
    let mut d = [0.0f32; 2];
    expect_err(
        vtpu_kernels::add(&mut d, &[1.0], &[1.0, 2.0]),
        "add",
        &["got 1"],
    );
    expect_err(
        vtpu_kernels::matmul_bt(&mut d, &[1.0], Weights::F32(&[1.0]), 1, 2, 1),
        "matmul_bt",
        &["b (n x k)"],
    );
    expect_err(
        vtpu_kernels::rope_halfsplit(&mut d, 1, 3, 0, 1.0),
        "rope_halfsplit",
        &["even"],
    );
}

#[test]
fn level_selection() {
    assert!(vtpu_kernels::is_supported(KernelLevel::Scalar));
    assert!(Kernels::new(KernelLevel::Scalar).is_some());
    assert_eq!(
        Kernels::new(vtpu_kernels::detected()).map(|k| k.level()),
        Some(vtpu_kernels::detected())
    );
    for l in KernelLevel::ALL {
        assert_eq!(KernelLevel::from_name(l.name()), Some(l));
        assert_eq!(Kernels::new(l).is_some(), l <= vtpu_kernels::detected());
    }
    assert_eq!(KernelLevel::from_name(" AVX2 "), Some(KernelLevel::Avx2));
    assert_eq!(KernelLevel::from_name("sse"), None);
    // set_level clamps to what the CPU supports and is what the free functions use.
    let got = vtpu_kernels::set_level(KernelLevel::Scalar);
    assert_eq!(got, KernelLevel::Scalar);
    assert_eq!(vtpu_kernels::level(), KernelLevel::Scalar);
    assert_eq!(Kernels::current().level(), KernelLevel::Scalar);
    let best = vtpu_kernels::set_level(KernelLevel::Avx512);
    assert_eq!(best, vtpu_kernels::detected());
    assert_eq!(vtpu_kernels::level(), best);
    println!("detected kernel level: {best}");
}
