//! The decoder layer on the vTPU against the f64 reference layer: both executors, 1 and
//! 2 sentrons (3 for a split with an idle attention sentron), prefill and decode at
//! several positions, chunked prefill, f32 / f16 / bf16 weights, the three preset
//! shapes; and every kind of bad input refused before the machine starts.
//! `--nocapture` prints the measured errors.

mod common;

use common::*;
use vtpu_llm::{LayerConfig, LayerError, LayerOptions, LayerRunner, LayerWeights};
use vtpu_phext::DType;
use vtpu_runtime::ExecutorKind;

fn opts(sentrons: usize, executor: ExecutorKind, dtype: DType) -> LayerOptions {
    LayerOptions {
        sentrons,
        executor,
        weight_dtype: dtype,
        max_tokens: 8,
        kv_capacity: 32,
        pin: false,
        ..LayerOptions::default()
    }
}

/// Prefill 5 tokens, then decode at positions 5, 6, 7; then a chunk of 3 at 8..10.
const STEPS: &[usize] = &[5, 1, 1, 1, 3];

#[test]
fn fast_executor_matches_reference_layer() {
    let mut worst = 0.0f64;
    for (name, cfg) in small_configs() {
        let w = scaled_weights(&cfg, 1);
        for n in [1, 2, 3] {
            let e = compare(
                name,
                &cfg,
                &w,
                &opts(n, ExecutorKind::Fast, DType::F32),
                STEPS,
                7,
            );
            println!(
                "{name:6} fast f32 {n} sentrons: max rel err {e:.2e} (tolerance {:.2e})",
                tolerance(&cfg, 11)
            );
            worst = worst.max(e);
        }
    }
    println!("worst max relative error vs the f64 reference (fast, f32): {worst:.2e}");
}

#[test]
fn reference_executor_matches_reference_layer() {
    for (name, cfg) in small_configs() {
        let w = scaled_weights(&cfg, 2);
        for n in [1, 2] {
            let e = compare(
                name,
                &cfg,
                &w,
                &opts(n, ExecutorKind::Reference, DType::F32),
                &[4, 1, 2],
                8,
            );
            println!("{name:6} reference executor {n} sentrons: max rel err {e:.2e}");
        }
    }
}

#[test]
fn half_precision_weights_match_reference_on_rounded_weights() {
    for (name, cfg) in small_configs() {
        let w = scaled_weights(&cfg, 3);
        for dtype in [DType::F16, DType::BF16] {
            for n in [1, 2] {
                let e = compare(
                    name,
                    &cfg,
                    &w,
                    &opts(n, ExecutorKind::Fast, dtype),
                    STEPS,
                    9,
                );
                println!(
                    "{name:6} fast {} {n} sentrons: max rel err {e:.2e}",
                    dtype.name()
                );
            }
        }
    }
}

#[test]
fn executors_agree_bit_for_bit_with_scalar_kernels() {
    // The fast executor with its kernels at the scalar level computes exactly what the
    // reference executor computes (same scalar references, same reduction order).
    for (name, cfg) in small_configs() {
        let w = scaled_weights(&cfg, 4);
        for n in [1, 2] {
            let mut outs = Vec::new();
            for exec in [ExecutorKind::Fast, ExecutorKind::Reference] {
                let o = LayerOptions {
                    kernel_level: Some(vtpu_kernels::KernelLevel::Scalar),
                    ..opts(n, exec, DType::F32)
                };
                let mut r = LayerRunner::new(&cfg, &w, &o).unwrap();
                let mut rng = vtpu_llm::SplitMix64::new(5);
                let mut all = Vec::new();
                let mut virt = Vec::new();
                let mut pos = 0;
                for t in [3usize, 1, 2] {
                    let x = inputs(&mut rng, t, cfg.dim);
                    let (y, rep) = r.forward(&x, pos).unwrap();
                    pos += t;
                    all.extend(y.iter().map(|v| v.to_bits()));
                    // A fast-executor session keeps its translation caches warm from one
                    // call to the next (the reference executor starts cold every run):
                    // PPT counts agree on the first call only.
                    virt.push(
                        rep.counters
                            .iter()
                            .map(|c| {
                                let mut v = c.virtual_part();
                                if pos > t {
                                    (v.ppt_hits, v.ppt_misses) = (0, 0);
                                }
                                v
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                outs.push((all, virt));
            }
            assert_eq!(
                outs[0].0, outs[1].0,
                "{name} {n}: outputs differ between executors"
            );
            assert_eq!(outs[0].1, outs[1].1, "{name} {n}: virtual counters differ");
        }
    }
}

#[test]
fn preset_shapes_match_reference_layer() {
    // The real shapes, fast executor, 2 sentrons: a 3-token prefill, then decodes.
    for (name, cfg) in [
        ("smollm2_135m", LayerConfig::smollm2_135m()),
        ("qwen25_05b", LayerConfig::qwen25_05b()),
        ("qwen3_style", LayerConfig::qwen3_style()),
    ] {
        let w = scaled_weights(&cfg, 6);
        let o = LayerOptions {
            kv_capacity: 16,
            ..opts(2, ExecutorKind::Fast, DType::F32)
        };
        let e = compare(name, &cfg, &w, &o, &[3, 1, 1], 10);
        println!(
            "{name}: max rel err {e:.2e} (tolerance {:.2e})",
            tolerance(&cfg, 5)
        );
    }
}

fn err_of(cfg: &LayerConfig, w: &LayerWeights, o: &LayerOptions) -> LayerError {
    match LayerRunner::new(cfg, w, o) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_is_refused_before_running() {
    let (_, cfg) = small_configs().remove(0);
    let w = scaled_weights(&cfg, 1);
    let o = opts(2, ExecutorKind::Fast, DType::F32);

    // Heads that do not match, weights of the wrong size.
    let bad = LayerConfig {
        n_kv_heads: 3,
        ..cfg.clone()
    };
    assert!(matches!(err_of(&bad, &w, &o), LayerError::Weights(_)));
    let mut short = w.clone();
    short.wv.pop();
    assert!(matches!(err_of(&cfg, &short, &o), LayerError::Weights(_)));
    // Dtypes the kernels cannot read.
    let q8 = LayerOptions {
        weight_dtype: DType::Q8_0,
        ..o.clone()
    };
    assert!(matches!(
        err_of(&cfg, &w, &q8),
        LayerError::WeightDType("q8_0")
    ));
    // Capacities.
    let big = LayerOptions {
        kv_capacity: cfg.max_seq + 1,
        ..o.clone()
    };
    assert!(matches!(
        err_of(&cfg, &w, &big),
        LayerError::CapacityAboveMaxSeq { .. }
    ));
    let zero = LayerOptions {
        max_tokens: 0,
        ..o.clone()
    };
    assert!(matches!(
        err_of(&cfg, &w, &zero),
        LayerError::ZeroCapacity { .. }
    ));
    let many = LayerOptions {
        sentrons: 65,
        ..o.clone()
    };
    assert!(matches!(err_of(&cfg, &w, &many), LayerError::Plan(_)));

    // Calls.
    let mut r = LayerRunner::new(&cfg, &w, &o).unwrap();
    let d = cfg.dim;
    assert!(matches!(
        r.forward(&vec![0.0; d + 1], 0),
        Err(LayerError::InputLength { .. })
    ));
    assert!(matches!(
        r.forward(&[], 0),
        Err(LayerError::InputLength { .. })
    ));
    assert!(matches!(
        r.forward(&vec![0.0; 9 * d], 0),
        Err(LayerError::TooManyTokens { .. })
    ));
    assert!(matches!(
        r.forward(&vec![0.0; d], 3),
        Err(LayerError::NonContiguousPosition { .. })
    ));
    r.set_kv_len(31).unwrap();
    assert!(matches!(
        r.forward(&vec![0.0; 2 * d], 31),
        Err(LayerError::PositionOutOfRange { .. })
    ));
    assert!(r.set_kv_len(33).is_err());
    // A refused call leaves the cache as it was; a good one continues it.
    assert_eq!(r.kv_len(), 31);
    r.forward(&vec![0.5; d], 31).unwrap();
    assert_eq!(r.kv_len(), 32);
    assert!(matches!(
        r.forward(&vec![0.0; d], 32),
        Err(LayerError::PositionOutOfRange { .. })
    ));
    for e in [
        LayerError::WeightDType("q8_0"),
        LayerError::ZeroCapacity { what: "x" },
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn the_comparison_catches_a_wrong_layer() {
    // The same run compared with a reference of the other rope layout must miss by far
    // more than the tolerance, or the tests above could not tell the layouts apart.
    let (_, cfg) = small_configs().remove(0);
    let w = scaled_weights(&cfg, 1);
    let mut r = LayerRunner::new(&cfg, &w, &opts(2, ExecutorKind::Fast, DType::F32)).unwrap();
    let wrong = LayerConfig {
        rope_layout: vtpu_llm::RopeLayout::HalfSplit,
        ..cfg.clone()
    };
    let mut cache = vtpu_llm::KvCacheF64::new(&wrong).unwrap();
    let x = inputs(&mut vtpu_llm::SplitMix64::new(3), 5, cfg.dim);
    let (got, _) = r.forward(&x, 0).unwrap();
    let want = vtpu_llm::layer_forward_f64(&wrong, &w, &x, 0, &mut cache).unwrap();
    let (e, tol) = (rel_err(&got, &want), tolerance(&cfg, 5));
    println!(
        "wrong rope layout: rel err {e:.2e} = {:.0}x the tolerance",
        e / tol
    );
    assert!(e > 100.0 * tol, "a wrong layout is only off by {e:.2e}");
}

#[test]
fn compiler_and_builtin_packers_give_identical_results() {
    // Same ops, same dependencies, different words and registers: every output bit
    // must agree. Also prints how densely each packs (ops per SIW, virtual).
    for (name, cfg) in small_configs() {
        let w = scaled_weights(&cfg, 5);
        let mut outs = Vec::new();
        for packer in [vtpu_llm::Packer::Compiler, vtpu_llm::Packer::Builtin] {
            let o = LayerOptions {
                packer,
                ..opts(2, ExecutorKind::Fast, DType::F32)
            };
            let mut r = LayerRunner::new(&cfg, &w, &o).unwrap();
            let mut rng = vtpu_llm::SplitMix64::new(6);
            let mut bits = Vec::new();
            let mut pos = 0;
            let mut ops_per_siw = 0.0;
            for t in [4usize, 1] {
                let x = inputs(&mut rng, t, cfg.dim);
                let (y, rep) = r.forward(&x, pos).unwrap();
                pos += t;
                bits.extend(y.iter().map(|v| v.to_bits()));
                ops_per_siw = vtpu_runtime::Counters::total(&rep.counters).ops_per_siw();
            }
            println!(
                "{name:6} {packer:?}: {} words, {ops_per_siw:.2} ops/SIW",
                r.program().total_words()
            );
            outs.push(bits);
        }
        assert_eq!(outs[0], outs[1], "{name}: packers disagree");
    }
}
