//! The layer with bf16 weights in the bf16-products mode (activations rounded to bf16
//! before each weight matmul, AVX-512 BF16) against the f64 reference on the rounded
//! weights, within `layer_bench::tolerance_bf16_products`; and the same layer with exact
//! products, which must stay within the f32 tolerance. The mode is process-wide, which
//! is why these tests have their own test binary. Skipped (with a note) on a CPU without
//! AVX-512 BF16. `--nocapture` prints the measured errors.

use vtpu_llm::layer_bench::{self, tolerance, tolerance_bf16_products, SHAPES};
use vtpu_llm::LayerOptions;
use vtpu_phext::DType;

fn opts(sentrons: usize) -> LayerOptions {
    LayerOptions {
        sentrons,
        weight_dtype: DType::BF16,
        max_tokens: 8,
        kv_capacity: 32,
        pin: false,
        ..LayerOptions::default()
    }
}

#[test]
fn bf16_products_layer_within_derived_tolerance() {
    if !vtpu_kernels::has_avx512_bf16() {
        println!("note: no AVX-512 BF16 on this CPU; bf16 products not tested");
        return;
    }
    for name in SHAPES {
        let cfg = layer_bench::shape(name).expect("a bench shape");
        vtpu_kernels::set_bf16_products(false);
        let (mut exact, w) = layer_bench::bench_runner(&cfg, &opts(2), 1).expect("runner");
        let e_exact = layer_bench::validate_against_reference(&mut exact, &cfg, &w)
            .unwrap_or_else(|e| panic!("{name} exact: {e}"));
        vtpu_kernels::set_bf16_products(true);
        assert!(layer_bench::bf16_products_active(DType::BF16));
        let (mut prod, w) = layer_bench::bench_runner(&cfg, &opts(2), 1).expect("runner");
        let e_prod = layer_bench::validate_against_reference(&mut prod, &cfg, &w)
            .unwrap_or_else(|e| panic!("{name} bf16 products: {e}"));
        vtpu_kernels::set_bf16_products(false);
        println!(
            "{name}: max rel err exact {e_exact:.2e} (tol {:.2e}), bf16 products {e_prod:.2e} (tol {:.2e})",
            tolerance(&cfg, 9),
            tolerance_bf16_products(&cfg, 9)
        );
        // The products really are rounded: the error is well above the exact one.
        assert!(
            e_prod > 10.0 * e_exact,
            "{name}: bf16 products error {e_prod:.2e} vs exact {e_exact:.2e}: not rounded?"
        );
    }
}
