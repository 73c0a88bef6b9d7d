//! Print the summary of a GGUF file: `cargo run -p vtpu-modelfile --example inspect_gguf -- FILE`.

use std::process::ExitCode;
use std::time::Instant;

use vtpu_modelfile::gguf::GgufFile;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inspect_gguf FILE.gguf");
        return ExitCode::FAILURE;
    };
    let t0 = Instant::now();
    match GgufFile::open(&path) {
        Ok(file) => {
            let parsed = t0.elapsed();
            print!("{}", file.summary());
            println!("parsed in {:.1} ms", parsed.as_secs_f64() * 1e3);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
