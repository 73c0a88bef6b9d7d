//! The Hugging Face backend, on a tokenizer.json rebuilt from the SmolLM2 GGUF (its
//! vocabulary and merges, with the pre-tokenizer, decoder and special tokens SmolLM2's
//! published tokenizer.json uses). SmolLM2's "smollm" pre-tokenizer in llama.cpp
//! (single digits, then GPT-2's regex) is the same split, so both backends must agree.

#![cfg(feature = "hf")]

#[path = "support/fuzz.rs"]
mod fuzz;

mod common;

use serde_json::json;
use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::{Tokenizer, TokenizerKind};

fn write_hf_files(gguf: &Tokenizer, dir: &std::path::Path, merges: Vec<String>) {
    let n = gguf.vocab_size() as u32;
    let vocab: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|id| {
            (
                gguf.token_text(id).unwrap_or_default().to_string(),
                json!(id),
            )
        })
        .collect();
    let added: Vec<serde_json::Value> = (0..n)
        .filter(|&id| gguf.is_control(id))
        .map(|id| {
            json!({"id": id, "content": gguf.token_text(id), "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let config = json!({
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "special": true},
        "chat_template": [{"name": "default", "template": "{{ messages }}"}],
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}

#[test]
fn hf_tokenizer_json_agrees_with_the_gguf_vocabulary() {
    let Some(path) = common::require(&common::smollm2_gguf(), "SmolLM2 GGUF") else {
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let gguf = Tokenizer::from_gguf(&file).unwrap();
    let merges: Vec<String> = file
        .get_str_array("tokenizer.ggml.merges")
        .unwrap()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_hf_files(&gguf, dir.path(), merges);
    let hf = Tokenizer::from_hf_dir(dir.path()).unwrap();

    assert_eq!(hf.kind(), TokenizerKind::HuggingFace);
    assert_eq!(hf.vocab_size(), gguf.vocab_size());
    assert_eq!(hf.bos(), Some(1));
    assert_eq!(hf.eos(), Some(2));
    assert!(
        hf.is_eog(2) && hf.is_eog(0),
        "<|im_end|> and <|endoftext|> end generation"
    );
    assert_eq!(hf.chat_template(), Some("{{ messages }}"));
    assert!(!hf.add_bos());

    // Special tokens: parsed only on request, rendered only on request.
    let chat = "<|im_start|>user\nHi<|im_end|>\n";
    assert_eq!(hf.encode(chat, false, true), gguf.encode(chat, false, true));
    assert_eq!(
        hf.encode(chat, false, false),
        gguf.encode(chat, false, false)
    );
    assert_eq!(hf.token_to_piece(2, false), b"");
    assert_eq!(hf.token_to_piece(2, true), b"<|im_end|>");

    // Ordinary text, including llama.cpp's test inputs and random text.
    let mut texts: Vec<String> = vec![
        "Hello world".into(),
        " Hello  world  ".into(),
        "\n\n\tindented\n    code();\r\n".into(),
        "naïve café — Äpfel über 日本語 🦙.cpp".into(),
        "3.14159 12345678 1,000,000".into(),
        "I'm can't we'll THEY'RE you've".into(),
    ];
    let vocab_inp = common::llama_vocab_dir().join("ggml-vocab-starcoder.gguf");
    if vocab_inp.exists() {
        texts.extend(common::read_vectors(&vocab_inp).into_iter().map(|(t, _)| t));
    }
    let mut rng = fuzz::Rng::new(5);
    let mut prev = String::new();
    for _ in 0..300 {
        prev = fuzz::gen_input(&mut rng, &prev, &[]);
        texts.push(prev.clone());
    }
    let mut diffs = Vec::new();
    for t in &texts {
        let (a, b) = (hf.encode(t, false, false), gguf.encode(t, false, false));
        if a != b {
            diffs.push(format!("{t:?}\n  hf   {a:?}\n  gguf {b:?}"));
        }
        assert_eq!(
            hf.token_to_piece(a.first().copied().unwrap_or(0), false),
            gguf.token_to_piece(a.first().copied().unwrap_or(0), false)
        );
        assert_eq!(hf.decode(&a), gguf.decode(&b), "{t:?}");
    }
    assert!(
        diffs.len() <= texts.len() / 100,
        "{} of {} texts differ:\n{}",
        diffs.len(),
        texts.len(),
        diffs.join("\n")
    );
    for d in &diffs {
        println!("differs (Unicode tables of different versions): {d}");
    }
}
