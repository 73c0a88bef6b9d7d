//! Writes fuzz inputs and this crate's token ids as JSON lines, for comparing against
//! llama.cpp with `scripts/compare_llamacpp.py` (which tokenizes the same texts through
//! libllama and reports every difference).
//!
//! ```text
//! cargo run --release -p vtpu-tokenizer --example tokenize_jsonl -- MODEL.gguf N SEED OUT.jsonl
//! ```
//! Each line: `{"text": ..., "plain": [ids of encode(text, false, false)],
//! "special": [ids of encode(text, true, true)], "detok_plain": hex of
//! detokenize(plain, remove_special = false, unparse_special = false), "detok_special":
//! hex of detokenize(special, remove_special = true, unparse_special = true)}`.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

use std::io::Write;

use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::{DetokenizeOptions, Tokenizer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, n, seed, out] = args.as_slice() else {
        eprintln!("usage: tokenize_jsonl MODEL.gguf N SEED OUT.jsonl");
        std::process::exit(2);
    };
    let n: u64 = n.parse().unwrap_or_else(|e| panic!("N: {e}"));
    let seed: u64 = seed.parse().unwrap_or_else(|e| panic!("SEED: {e}"));
    let file = GgufFile::open(model).unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{e}"));
    let specials = fuzz::special_texts(&tok);
    let mut rng = fuzz::Rng::new(seed);
    let mut prev = String::new();
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).unwrap_or_else(|e| panic!("{out}: {e}")),
    );
    for _ in 0..n {
        let text = fuzz::gen_input(&mut rng, &prev, &specials);
        let plain = tok.encode(&text, false, false);
        let special = tok.encode(&text, true, true);
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let all = DetokenizeOptions {
            remove_special: true,
            unparse_special: true,
        };
        let line = serde_json::json!({
            "text": text,
            "detok_plain": hex(tok.detokenize(&plain, DetokenizeOptions::default())),
            "detok_special": hex(tok.detokenize(&special, all)),
            "plain": plain,
            "special": special,
        });
        writeln!(w, "{line}").unwrap_or_else(|e| panic!("{out}: {e}"));
        prev = text;
    }
    w.flush().unwrap_or_else(|e| panic!("{out}: {e}"));
}
