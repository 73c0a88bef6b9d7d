//! Hugging Face model directories on the vTPU: the tiny random checkpoints in
//! `testdata/hf/{llama,qwen2,qwen3}/` (written by `scripts/gen_hf_tiny.py` with
//! transformers' `save_pretrained`, float32) are opened through [`HfSource`], run on the
//! vTPU (1 and 2 sentrons, fast executor) and compared with transformers' own logits in
//! `golden.json` (6-token prefill, then 3 decode steps) and with the f64
//! [`ReferenceModel`]. Also: their tokenizer.json against the Python `tokenizers`
//! package, a sharded f16/bf16 copy (index + two shards, aligned for zero-copy pages),
//! and broken directories, each of which must fail naming the file and the field.
//!
//! Run with `--nocapture` to see the measured errors.
//!
//! # Tolerance
//!
//! A length-n dot product in f32, summed in any order, is off by at most
//! gamma_n ~ n * u times sum|a_i b_i| (Higham, Accuracy and Stability, Thm 3.1), with
//! u = f32::EPSILON / 2 the unit roundoff. `gen_hf_tiny.py` scales every stage to O(1)
//! gain (projections N(0, 1/fan_in), norm scales in [0.5, 1.5]), so to first order the
//! errors of the reductions the residual stream passes through add up, each relative to
//! the magnitude of what it feeds, and the logits' error relative to max|logit| is at
//! most u times
//!
//! ```text
//! K = L * (D (attn norm) + D (q/k/v) + Hd (scores) + S (softmax . V) + H*Hd (o_proj)
//!          + D (ffn norm) + D (gate/up) + F (down) + 16 (RoPE, exp, silu, residuals))
//!   + D (output norm) + D (output projection)
//! ```
//!
//! per implementation that rounds in f32: two against transformers (the vTPU and
//! PyTorch), one against the f64 reference (which rounds activations to f32 between
//! layers only, as the vTPU does). E.g. llama (L 2, D 64, Hd 16, S 9, H*Hd 64, F 128):
//! K = 1106, tol = 2 u K = 1.3e-4. This is a worst-case bound (errors of random sign
//! grow like sqrt(n)), yet far below what a real mistake costs:
//! `wrong_rope_layout_is_caught` checks that the same comparison fails by orders of
//! magnitude with the other RoPE layout.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vtpu_llm::model::hf_source::HfSourceError;
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{HfSource, LoadError, Model, ModelConfig, ModelError, ModelOptions};
use vtpu_llm::RopeLayout;
use vtpu_modelfile::hf::{encode_safetensors, HfDtype, HfModelDir};
use vtpu_runtime::ExecutorKind;
use vtpu_tokenizer::Tokenizer;

const ARCHS: [&str; 3] = ["llama", "qwen2", "qwen3"];
/// f32 unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

fn hf_dir(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hf")
        .join(arch)
}

struct Golden {
    prefill: Vec<u32>,
    decode: Vec<u32>,
    /// [1 + decode.len()] rows of [V]: after the prefill, then after each decode step.
    logits: Vec<Vec<f64>>,
    tokenizer: Vec<(String, bool, Vec<u32>)>,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

fn golden(arch: &str) -> Golden {
    let path = hf_dir(arch).join("golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let g: Value = serde_json::from_str(&text).expect("golden.json is JSON");
    assert_eq!(g["arch"], arch);
    let logits = g["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().expect("a number"))
                .collect()
        })
        .collect();
    let tokenizer = g["tokenizer"]
        .as_array()
        .expect("tokenizer cases")
        .iter()
        .map(|c| {
            (
                c["text"].as_str().expect("text").to_string(),
                c["add_special"].as_bool().expect("add_special"),
                ids(&c["ids"]),
            )
        })
        .collect();
    Golden {
        prefill: ids(&g["prefill"]),
        decode: ids(&g["decode"]),
        logits,
        tokenizer,
    }
}

/// u * K of the module doc: the relative error one f32 implementation may make in the
/// logits of a model of `cfg` over `seq` positions.
fn f32_bound(cfg: &ModelConfig, seq: usize) -> f64 {
    let c = &cfg.layer;
    let per_layer = 4 * c.dim + c.head_dim + seq + c.q_dim() + c.ffn_dim + 16;
    U * (cfg.n_layers * per_layer + 2 * c.dim) as f64
}

/// max_i |got_i - want_i| / max_i |want_i|.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "logit count");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

fn opts(sentrons: usize, max_tokens: usize) -> ModelOptions {
    ModelOptions {
        sentrons,
        ctx: Some(32),
        max_tokens,
        executor: ExecutorKind::Fast,
        pin: false,
        // The bounds below are derived for f32 arithmetic throughout (the f16 cache's
        // rounding and f16 accumulation are checked in model_kv_f16.rs).
        kv_type: vtpu_phext::DType::F32,
        ..ModelOptions::default()
    }
}

/// Runs the golden sequence (prefill, then one token at a time) on the vTPU and on the
/// f64 reference; returns the logits after each step: (vTPU, reference).
fn run(
    src: &HfSource,
    cfg: &ModelConfig,
    g: &Golden,
    o: &ModelOptions,
) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    let mut m = Model::load(src, cfg.clone(), o)
        .unwrap_or_else(|e| panic!("{}: {e}", src.path().display()));
    let mut r = ReferenceModel::load(src, cfg).expect("reference model");
    let steps: Vec<Vec<u32>> = std::iter::once(g.prefill.clone())
        .chain(g.decode.iter().map(|&t| vec![t]))
        .collect();
    let mut got = Vec::new();
    let mut want = Vec::new();
    for s in &steps {
        got.push(m.forward(s).expect("vTPU forward").to_vec());
        want.push(r.forward(s).expect("reference forward"));
    }
    assert_eq!(m.pos(), g.prefill.len() + g.decode.len());
    (got, want)
}

fn check_arch(arch: &str) {
    let g = golden(arch);
    let src = HfSource::open(hf_dir(arch)).unwrap_or_else(|e| panic!("{e}"));
    let cfg = src.config().clone();
    assert_eq!(g.logits.len(), 1 + g.decode.len());
    assert!(
        g.logits.iter().all(|row| row.len() == cfg.vocab),
        "{arch}: golden rows are [vocab]"
    );
    let seq = g.prefill.len() + g.decode.len();
    let bound = f32_bound(&cfg, seq);
    let (tol_hf, tol_ref) = (2.0 * bound, bound);

    // The f64 reference against transformers: both read the checkpoint the same way.
    let (_, want) = run(&src, &cfg, &g, &opts(1, 16));
    let mut worst_ref_hf = 0.0f64;
    for (i, (w, h)) in want.iter().zip(&g.logits).enumerate() {
        let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let e = rel_err(&w32, h);
        worst_ref_hf = worst_ref_hf.max(e);
        assert!(
            e < tol_ref,
            "{arch}: f64 reference vs transformers at step {i}: {e:.2e} (tol {tol_ref:.2e})"
        );
    }

    // 1 sentron, the prompt in one call; 2 sentrons, the prompt in chunks of 4.
    for (sentrons, max_tokens) in [(1, 16), (2, 4)] {
        let (got, want) = run(&src, &cfg, &g, &opts(sentrons, max_tokens));
        let (mut worst_hf, mut worst_ref) = (0.0f64, 0.0f64);
        for (i, ((v, r), h)) in got.iter().zip(&want).zip(&g.logits).enumerate() {
            let e_hf = rel_err(v, h);
            let e_ref = rel_err(v, r);
            assert!(
                e_hf < tol_hf,
                "{arch} x{sentrons}: vTPU vs transformers at step {i}: {e_hf:.2e} (tol {tol_hf:.2e})"
            );
            assert!(
                e_ref < tol_ref,
                "{arch} x{sentrons}: vTPU vs f64 reference at step {i}: {e_ref:.2e} (tol {tol_ref:.2e})"
            );
            worst_hf = worst_hf.max(e_hf);
            worst_ref = worst_ref.max(e_ref);
        }
        println!(
            "{arch} x{sentrons}: max rel err vs transformers {worst_hf:.2e} (tol {tol_hf:.2e}), \
             vs f64 reference {worst_ref:.2e} (tol {tol_ref:.2e}); reference vs transformers {worst_ref_hf:.2e}"
        );
    }
}

#[test]
fn llama_matches_transformers() {
    check_arch("llama");
}

#[test]
fn qwen2_matches_transformers() {
    check_arch("qwen2");
}

#[test]
fn qwen3_matches_transformers() {
    check_arch("qwen3");
}

#[test]
fn configs_map_as_written() {
    let llama = HfSource::open(hf_dir("llama")).expect("llama");
    let c = llama.config();
    assert_eq!(
        (
            c.n_layers,
            c.vocab,
            c.layer.dim,
            c.layer.n_heads,
            c.layer.n_kv_heads
        ),
        (2, 384, 64, 4, 2)
    );
    assert_eq!(
        (c.layer.head_dim, c.layer.ffn_dim, c.layer.max_seq),
        (16, 128, 128)
    );
    assert!(c.tied_embeddings && !c.layer.qkv_bias && !c.layer.qk_norm);
    assert_eq!(c.layer.rope_layout, RopeLayout::HalfSplit);
    assert_eq!(c.layer.rms_eps, 1e-5);
    assert_eq!(c.layer.rope_theta, 10000.0);

    let qwen2 = HfSource::open(hf_dir("qwen2")).expect("qwen2");
    let c = qwen2.config();
    assert_eq!((c.vocab, c.layer.n_kv_heads, c.layer.ffn_dim), (320, 1, 96));
    assert!(!c.tied_embeddings && c.layer.qkv_bias && !c.layer.qk_norm);
    assert_eq!(c.layer.rope_theta, 1e6);

    let qwen3 = HfSource::open(hf_dir("qwen3")).expect("qwen3");
    let c = qwen3.config();
    assert_eq!(
        (c.layer.head_dim, c.layer.q_dim(), c.layer.dim),
        (32, 128, 64)
    );
    assert!(c.tied_embeddings && !c.layer.qkv_bias && c.layer.qk_norm);
    assert_eq!(c.layer.rms_eps, 1e-6);
}

/// The comparison has teeth: the other RoPE layout on the same weights misses the
/// transformers logits by far more than the tolerance.
#[test]
fn wrong_rope_layout_is_caught() {
    let g = golden("llama");
    let src = HfSource::open(hf_dir("llama")).expect("llama");
    let mut cfg = src.config().clone();
    cfg.layer.rope_layout = RopeLayout::Interleaved;
    let tol = 2.0 * f32_bound(&cfg, g.prefill.len() + g.decode.len());
    let mut m = Model::load(&src, cfg, &opts(1, 16)).expect("load");
    m.forward(&g.prefill).expect("prefill");
    let mut e = 0.0f64;
    for (i, &t) in g.decode.iter().enumerate() {
        e = e.max(rel_err(m.forward(&[t]).expect("decode"), &g.logits[i + 1]));
    }
    println!("llama with interleaved RoPE: rel err {e:.2e} (tol {tol:.2e})");
    assert!(
        e > 100.0 * tol,
        "a wrong RoPE layout went unnoticed: {e:.2e}"
    );
}

#[test]
fn tokenizers_match_python() {
    for arch in ARCHS {
        let dir = hf_dir(arch);
        let g = golden(arch);
        let tok = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let hf = HfModelDir::open(&dir).expect("directory");
        assert!(
            tok.vocab_size() <= hf.config.vocab_size,
            "{arch}: more tokens than embedding rows"
        );
        assert_eq!(tok.add_bos(), arch == "llama", "{arch}: add_bos");
        assert_eq!(
            tok.eos(),
            hf.config.eos_token_ids.first().copied(),
            "{arch}: eos"
        );
        assert!(
            tok.eos().is_some_and(|e| tok.is_eog(e)),
            "{arch}: eos ends generation"
        );
        assert!(tok.chat_template().is_some(), "{arch}: chat template");
        assert!(g.tokenizer.len() >= 5);
        for (text, add_special, want) in &g.tokenizer {
            let got = tok.try_encode(text, *add_special, true).expect("encode");
            assert_eq!(&got, want, "{arch}: {text:?} (add_special {add_special})");
            // Byte-level BPE is lossless; special tokens are not printed.
            if !text.contains("<|") {
                assert_eq!(&tok.decode(&got), text, "{arch}: decode");
            }
        }
        // The golden token sequence is the prompt's encoding.
        let first = &g.tokenizer[0].2;
        assert_eq!(
            &first[..g.prefill.len()],
            &g.prefill[..],
            "{arch}: golden prompt ids"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rewritten copies of the tiny checkpoints.

/// One tensor: name, dtype, shape, bytes.
type Tensor = (String, HfDtype, Vec<usize>, Vec<u8>);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vtpu-model-hf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `arch`'s directory without its weights: config, tokenizer and generation files.
fn copy_without_weights(arch: &str, name: &str) -> PathBuf {
    let dst = scratch(name);
    for entry in std::fs::read_dir(hf_dir(arch)).expect("testdata") {
        let p = entry.expect("entry").path();
        let file = p
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        if !file.ends_with(".safetensors") {
            std::fs::copy(&p, dst.join(&file)).expect("copy");
        }
    }
    dst
}

fn tensors_of(arch: &str) -> Vec<Tensor> {
    let d = HfModelDir::open(hf_dir(arch)).expect("testdata");
    d.tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dtype,
                t.shape.clone(),
                d.tensor_bytes(t).to_vec(),
            )
        })
        .collect()
}

/// A safetensors file whose data section starts on a 64-byte boundary (the header is
/// padded with spaces, which the format allows), so tensors whose sizes are multiples
/// of 32 bytes all sit on the loader's mapping alignment.
fn safetensors_aligned(tensors: &[Tensor]) -> Vec<u8> {
    let inputs: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
        .collect();
    let enc = encode_safetensors(&inputs).expect("encode");
    let n = u64::from_le_bytes(enc[..8].try_into().expect("8 bytes")) as usize;
    let mut header = enc[8..8 + n].to_vec();
    while !(8 + header.len()).is_multiple_of(64) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&enc[8 + n..]);
    out
}

fn write_single(dir: &Path, tensors: &[Tensor]) {
    std::fs::write(dir.join("model.safetensors"), safetensors_aligned(tensors)).expect("write");
}

fn to_half(t: &Tensor, dtype: HfDtype) -> Tensor {
    assert_eq!(t.1, HfDtype::F32);
    let bytes =
        t.3.chunks_exact(4)
            .flat_map(|c| {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                match dtype {
                    HfDtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                    _ => half::bf16::from_f32(x).to_le_bytes(),
                }
            })
            .collect();
    (t.0.clone(), dtype, t.2.clone(), bytes)
}

/// Writes `shards` (file name, tensors) and the index naming them.
fn write_sharded(dir: &Path, shards: &[(&str, Vec<Tensor>)]) {
    let mut map = serde_json::Map::new();
    let mut total = 0;
    for (file, tensors) in shards {
        for t in tensors {
            map.insert(t.0.clone(), Value::String(file.to_string()));
            total += t.3.len();
        }
        std::fs::write(dir.join(file), safetensors_aligned(tensors)).expect("write shard");
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())
        .expect("write index");
}

const SHARD1: &str = "model-00001-of-00002.safetensors";
const SHARD2: &str = "model-00002-of-00002.safetensors";

/// llama split over two shards, f16 in the first and bf16 in the second, both aligned:
/// the vTPU must match the f64 reference (which reads the same rounded weights) and map
/// the matrices zero-copy; the committed f32 file is mapped or copied as its alignment
/// allows (its data section starts at 2064 = 16 mod 32: copied).
#[test]
fn sharded_f16_bf16_maps_zero_copy() {
    let dir = copy_without_weights("llama", "sharded");
    let all = tensors_of("llama");
    let (first, second): (Vec<_>, Vec<_>) = all
        .iter()
        .partition(|t| !t.0.starts_with("model.layers.1."));
    let first: Vec<Tensor> = first.iter().map(|t| to_half(t, HfDtype::F16)).collect();
    let second: Vec<Tensor> = second.iter().map(|t| to_half(t, HfDtype::BF16)).collect();
    assert!(!first.is_empty() && !second.is_empty());
    write_sharded(&dir, &[(SHARD1, first), (SHARD2, second)]);

    let src = HfSource::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.model_dir().shards.len(), 2);
    let cfg = src.config().clone();
    let g = golden("llama");
    let tol = f32_bound(&cfg, g.prefill.len() + g.decode.len());
    let (got, want) = run(&src, &cfg, &g, &opts(2, 16));
    let mut worst = 0.0f64;
    for (i, (v, r)) in got.iter().zip(&want).enumerate() {
        let e = rel_err(v, r);
        assert!(
            e < tol,
            "sharded llama step {i}: vTPU vs f64 reference {e:.2e} (tol {tol:.2e})"
        );
        worst = worst.max(e);
    }
    // The rounding to 16 bits is visible: these are not the f32 logits.
    let f32_err = rel_err(&got[0], &g.logits[0]);
    assert!(
        f32_err > tol,
        "f16/bf16 weights gave the f32 logits ({f32_err:.2e})"
    );

    let m = Model::load(&src, cfg.clone(), &opts(1, 16)).expect("load");
    let embd = cfg.vocab * cfg.layer.dim * 2;
    println!(
        "sharded f16/bf16 llama: max rel err vs f64 reference {worst:.2e} (tol {tol:.2e}); \
         {} bytes mapped, {} copied",
        m.load.mapped_bytes, m.load.copied_bytes
    );
    // Every matrix is mapped (the whole-row split reads row ranges of w_o and w_down in
    // place); only the f16/bf16 norm scales are copied, converted to f32.
    assert!(
        m.load.mapped_bytes >= embd,
        "matrices were copied: {} bytes mapped",
        m.load.mapped_bytes
    );
    let norms = (2 * cfg.n_layers + 1) * cfg.layer.dim * 4;
    assert_eq!(m.load.copied_bytes, norms, "copied bytes: norm scales only");

    // The committed file: every tensor size is a multiple of 32 bytes, so all of them
    // share the data section's alignment and are either all mapped or all copied.
    let committed = HfSource::open(hf_dir("llama")).expect("llama");
    let aligned = committed.model_dir().shards[0]
        .data_start()
        .is_multiple_of(vtpu_phext::MAPPED_ALIGN);
    let m = Model::load(&committed, cfg, &opts(1, 16)).expect("load");
    println!(
        "committed llama (data section at {}): {} bytes mapped, {} copied",
        committed.model_dir().shards[0].data_start(),
        m.load.mapped_bytes,
        m.load.copied_bytes
    );
    assert_eq!(
        m.load.mapped_bytes > 0,
        aligned,
        "mapped exactly when aligned"
    );
    assert_eq!(
        m.load.copied_bytes > 0,
        !aligned,
        "copied exactly when misaligned"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Broken directories: each error names the file and the field or tensor.

fn open_err(dir: &Path) -> String {
    match HfSource::open(dir) {
        Ok(_) => panic!("{} opened, but it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    println!("error: {msg}");
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

#[test]
fn bad_not_a_model_directory() {
    let dir = scratch("no-config");
    let msg = open_err(&dir);
    assert_mentions(
        &msg,
        &[&dir.join("config.json").display().to_string(), "not found"],
    );

    std::fs::write(dir.join("model.gguf"), b"GGUF").expect("write");
    let msg = open_err(&dir.join("model.gguf"));
    assert_mentions(&msg, &["model.gguf", "not a directory"]);
    let _ = std::fs::remove_dir_all(&dir);

    // config.json but no weights.
    let dir = copy_without_weights("qwen2", "no-weights");
    let msg = open_err(&dir);
    assert_mentions(
        &msg,
        &[
            "model.safetensors or model.safetensors.index.json",
            "not found",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_missing_field() {
    let dir = copy_without_weights("qwen3", "missing-field");
    write_single(&dir, &tensors_of("qwen3"));
    let path = dir.join("config.json");
    let mut c: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let original = c.clone();
    c.as_object_mut()
        .expect("object")
        .remove("num_hidden_layers");
    std::fs::write(&path, c.to_string()).expect("write");
    let msg = open_err(&dir);
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "missing field `num_hidden_layers`",
        ],
    );

    // A field of the wrong type, and an architecture vtpu does not run.
    let mut c = original.clone();
    c["hidden_size"] = Value::String("64".into());
    std::fs::write(&path, c.to_string()).expect("write");
    assert_mentions(&open_err(&dir), &["config.json", "hidden_size"]);
    let mut c = original;
    c["model_type"] = Value::String("gpt2".into());
    std::fs::write(&path, c.to_string()).expect("write");
    assert_mentions(
        &open_err(&dir),
        &["config.json", "unsupported architecture `gpt2`"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_shard_missing_from_index() {
    let dir = copy_without_weights("qwen2", "missing-shard");
    let all = tensors_of("qwen2");
    let (a, b): (Vec<Tensor>, Vec<Tensor>) =
        all.into_iter().partition(|t| t.0.contains("layers.0."));
    write_sharded(&dir, &[(SHARD1, a.clone()), (SHARD2, b.clone())]);
    HfSource::open(&dir).unwrap_or_else(|e| panic!("the intact sharded copy must open: {e}"));

    // The second shard file is gone.
    std::fs::remove_file(dir.join(SHARD2)).expect("remove");
    assert_mentions(&open_err(&dir), &[SHARD2]);

    // The index lists a tensor its shard does not hold.
    let mut short = b.clone();
    let dropped = short.pop().expect("a tensor").0;
    write_sharded(&dir, &[(SHARD1, a.clone()), (SHARD2, b)]);
    std::fs::write(dir.join(SHARD2), safetensors_aligned(&short)).expect("write");
    assert_mentions(
        &open_err(&dir),
        &["model.safetensors.index.json", &dropped, SHARD2],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tensor_wrong_shape() {
    let dir = copy_without_weights("qwen3", "wrong-shape");
    let mut all = tensors_of("qwen3");
    let name = "model.layers.1.self_attn.k_proj.weight";
    let t = all.iter_mut().find(|t| t.0 == name).expect("k_proj");
    assert_eq!(t.2, vec![64, 64]);
    // k_proj is [kv * Hd, D] = [64, 64] here; give it [32, 128] (same byte count).
    t.2 = vec![32, 128];
    write_single(&dir, &all);
    let msg = open_err(&dir);
    assert_mentions(
        &msg,
        &[
            &dir.join("model.safetensors").display().to_string(),
            name,
            "[32, 128]",
            "expected [64, 64]",
            "qwen3",
        ],
    );

    // A 3-D tensor.
    let mut all = tensors_of("qwen3");
    let t = all
        .iter_mut()
        .find(|t| t.0 == "model.norm.weight")
        .expect("norm");
    t.2 = vec![1, 1, 64];
    write_single(&dir, &all);
    assert_mentions(
        &open_err(&dir),
        &["model.safetensors", "model.norm.weight", "3 dimensions"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_unknown_or_missing_tensor() {
    let dir = copy_without_weights("llama", "unknown-tensor");
    // An o_proj bias (Llama with attention_bias): vtpu has no such op, so it must not
    // be dropped silently.
    let mut all = tensors_of("llama");
    let bias = "model.layers.0.self_attn.o_proj.bias";
    all.push((bias.into(), HfDtype::F32, vec![64], vec![0; 256]));
    write_single(&dir, &all);
    assert_mentions(
        &open_err(&dir),
        &["model.safetensors", bias, "not a tensor of a llama model"],
    );

    // A layer past num_hidden_layers.
    let mut all = tensors_of("llama");
    all.push((
        "model.layers.2.input_layernorm.weight".into(),
        HfDtype::F32,
        vec![64],
        vec![0; 256],
    ));
    write_single(&dir, &all);
    assert_mentions(
        &open_err(&dir),
        &[
            "model.layers.2.input_layernorm.weight",
            "num_hidden_layers = 2",
        ],
    );

    // Q/K/V biases that the config does not switch on.
    let mut all = tensors_of("llama");
    all.push((
        "model.layers.1.self_attn.q_proj.bias".into(),
        HfDtype::F32,
        vec![64],
        vec![0; 256],
    ));
    write_single(&dir, &all);
    assert_mentions(
        &open_err(&dir),
        &["model.layers.1.self_attn.q_proj.bias", "attention_bias"],
    );

    // A missing tensor opens (the directory is consistent) but does not load.
    let mut all = tensors_of("llama");
    let gone = "model.layers.1.mlp.up_proj.weight";
    all.retain(|t| t.0 != gone);
    write_single(&dir, &all);
    let src = HfSource::open(&dir).expect("opens");
    match Model::load(&src, src.config().clone(), &opts(1, 8)) {
        Err(ModelError::Load(e @ LoadError::Missing { .. })) => {
            assert_mentions(&e.to_string(), &[&dir.display().to_string(), gone])
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded without {gone}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `lm_head.weight` absent while the config says untied: the output is the embedding
/// (the only reading transformers' own weights could have).
#[test]
fn absent_lm_head_ties_the_output() {
    let dir = copy_without_weights("qwen2", "no-lm-head");
    let mut all = tensors_of("qwen2");
    let embd = all
        .iter()
        .find(|t| t.0 == "model.embed_tokens.weight")
        .expect("embd")
        .3
        .clone();
    all.retain(|t| t.0 != "lm_head.weight");
    write_single(&dir, &all);
    let src = HfSource::open(&dir).expect("opens");
    assert!(!src.model_dir().config.tie_word_embeddings);
    assert!(src.config().tied_embeddings);
    let cfg = src.config().clone();
    let mut r = ReferenceModel::load(&src, &cfg).expect("reference");
    let want = r.forward(&[5, 6, 7]).expect("forward");
    let out_f32: Vec<f32> = r.output.clone();
    let embd_f32: Vec<f32> = embd
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(out_f32, embd_f32, "the output projection is the embedding");
    let mut m = Model::load(&src, cfg.clone(), &opts(2, 8)).expect("load");
    let e = rel_err(m.forward(&[5, 6, 7]).expect("forward"), &want);
    assert!(e < f32_bound(&cfg, 3), "tied qwen2: {e:.2e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hf_source_error_kinds() {
    // Callers can tell a missing directory from a broken file.
    let dir = scratch("kinds");
    assert!(matches!(
        HfSource::open(&dir),
        Err(HfSourceError::NotModelDir { .. })
    ));
    std::fs::write(dir.join("config.json"), "{").expect("write");
    assert!(matches!(HfSource::open(&dir), Err(HfSourceError::Dir(_))));
    let _ = std::fs::remove_dir_all(&dir);
}
