//! Fuzz the Hugging Face readers (config / tokenizer_config / generation_config / index
//! JSON and safetensors files):
//! `cargo run --release -p vtpu-modelfile --example fuzz_hf -- N [SEED]`.
//! Panicking inputs are written to `target/fuzz-crashes/hf-<n>.bin`.

use std::path::PathBuf;
use std::process::ExitCode;

use vtpu_modelfile::fuzz::{fuzz_hf, hf_seeds};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed);
    let seeds = hf_seeds();
    println!(
        "fuzz_hf: {n} inputs, rng seed {seed}, seeds: {} configs, {} tokenizer configs, {} generation configs, {} indexes, {} safetensors",
        seeds.configs.len(),
        seeds.tokenizer_configs.len(),
        seeds.generation_configs.len(),
        seeds.indexes.len(),
        seeds.safetensors.len()
    );
    let report = fuzz_hf(&seeds, n, seed, |r| {
        eprintln!(
            "  ... {} inputs, {} ok, {} panics, {:.0} s",
            r.inputs,
            r.ok,
            r.panics.len(),
            r.elapsed.as_secs_f64()
        );
    });
    print!("{report}");
    if report.panics.is_empty() {
        return ExitCode::SUCCESS;
    }
    let dir = PathBuf::from("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    for (i, c) in report.panics.iter().enumerate() {
        let path = dir.join(format!("hf-{i}.bin"));
        match std::fs::write(&path, &c.input) {
            Ok(()) => println!("saved {} ({})", path.display(), c.message),
            Err(e) => println!("cannot save {}: {e}", path.display()),
        }
    }
    ExitCode::FAILURE
}
