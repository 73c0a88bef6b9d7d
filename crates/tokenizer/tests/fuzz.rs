//! A short run of the fuzzer (`examples/fuzz_tokenizer.rs` runs it long): random,
//! mutated and adversarial inputs through encode/decode on real vocabularies, plus the
//! 100 KB no-space inputs that must not blow up quadratically.

#[path = "support/fuzz.rs"]
mod fuzz;

mod common;

use std::time::Duration;

use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::Tokenizer;

fn vocabularies() -> Vec<(String, Tokenizer)> {
    let mut paths = vec![("smollm2".to_string(), common::smollm2_gguf())];
    for name in ["llama-bpe", "qwen2", "llama-spm", "deepseek-llm"] {
        paths.push((
            name.to_string(),
            common::llama_vocab_dir().join(format!("ggml-vocab-{name}.gguf")),
        ));
    }
    paths
        .into_iter()
        .filter_map(|(name, p)| {
            let p = common::require(&p, &name)?;
            let file = GgufFile::open(&p).unwrap_or_else(|e| panic!("{e}"));
            Some((
                name,
                Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{e}")),
            ))
        })
        .collect()
}

#[test]
fn short_fuzz_run() {
    let toks = vocabularies();
    let mut stats: Vec<fuzz::Stats> = toks.iter().map(|_| fuzz::Stats::default()).collect();
    let specials: Vec<Vec<String>> = toks.iter().map(|(_, t)| fuzz::special_texts(t)).collect();
    let mut rng = fuzz::Rng::new(0xC0FFEE);
    let mut prev = String::new();
    for i in 0..1500 {
        let k = i % toks.len().max(1);
        let input = fuzz::gen_input(
            &mut rng,
            &prev,
            specials.get(k).map(Vec::as_slice).unwrap_or(&[]),
        );
        for ((name, tok), st) in toks.iter().zip(stats.iter_mut()) {
            fuzz::check(name, tok, &input, st);
        }
        prev = input;
    }
    for ((name, _), st) in toks.iter().zip(&stats) {
        println!(
            "{name}: {} inputs, {} tokens, max {:?}",
            st.inputs, st.tokens, st.max_time
        );
        assert!(
            st.failures.is_empty(),
            "{}",
            st.failures[..st.failures.len().min(5)].join("\n")
        );
    }
}

#[test]
fn long_inputs_without_spaces_stay_fast() {
    for (name, tok) in vocabularies() {
        for (what, bytes, ntok, dt) in fuzz::long_inputs(&tok) {
            println!("{name} {what}: {bytes} B -> {ntok} tokens in {dt:?}");
            // Release builds take 1-70 ms (see the example); this allows for the test
            // profile and a busy machine, and still catches anything quadratic.
            assert!(dt < Duration::from_secs(2), "{name} {what}: {dt:?}");
            assert!(ntok > 0);
        }
    }
}
