//! llama.cpp's tokenizer test vectors (`tests/test-tokenizer-0.cpp`): every input of each
//! `ggml-vocab-<name>.gguf.inp` must encode (add_special = false, parse_special = false)
//! to exactly the ids on the matching line of `.gguf.out`.

mod common;

use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::Tokenizer;

fn check_vocab(name: &str) {
    let path = common::llama_vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let Some(path) = common::require(&path, &format!("llama.cpp test vocabulary {name}")) else {
        return;
    };
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let tok = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
    let vectors = common::read_vectors(&path);
    let mut failures = Vec::new();
    for (text, want) in &vectors {
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!(
                "  input {text:?}\n    want {want:?}\n    got  {got:?}"
            ));
        }
    }
    println!(
        "{name}: {}/{} vectors match",
        vectors.len() - failures.len(),
        vectors.len()
    );
    assert!(
        vectors.len() >= 30,
        "{name}: only {} vectors",
        vectors.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {} vectors differ:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_spm() {
    check_vocab("llama-spm");
}

#[test]
fn llama_bpe() {
    check_vocab("llama-bpe");
}

#[test]
fn qwen2() {
    check_vocab("qwen2");
}

#[test]
fn gpt_2() {
    check_vocab("gpt-2");
}

#[test]
fn qwen35() {
    check_vocab("qwen35");
}

#[test]
fn deepseek_llm() {
    check_vocab("deepseek-llm");
}

#[test]
fn deepseek_coder() {
    check_vocab("deepseek-coder");
}

#[test]
fn falcon() {
    check_vocab("falcon");
}

#[test]
fn starcoder() {
    check_vocab("starcoder");
}

#[test]
fn refact() {
    check_vocab("refact");
}

#[test]
fn command_r() {
    check_vocab("command-r");
}

#[test]
fn phi_3() {
    check_vocab("phi-3");
}

#[test]
fn mpt() {
    check_vocab("mpt");
}
