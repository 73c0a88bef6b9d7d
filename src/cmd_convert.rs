//! `vtpu convert MODEL OUT.phext [--type T]`: a GGUF model as a phext-space image
//! (crates/llm `model::image`): every tensor a read-only page at its coordinate of the
//! scheme, plus one page holding the model's metadata, saved atomically with a checksum
//! per page. `-m OUT.phext` maps it back zero-copy. What was written goes to stderr.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use vtpu_llm::model::image::{convert, metadata_coord, ConvertOptions, ImageType};

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The model: a GGUF file.
    pub model: PathBuf,
    /// The image to write: a `.phext` manifest; its sidecar (`OUT.phext.<id>.bin`, the
    /// page bytes) goes beside it. An existing image there is replaced atomically.
    pub out: PathBuf,
    /// Store every matrix (the token embedding and output projection included) as
    /// TYPE: q8_0, q4_0, f16, bf16 or f32; norm scales and biases become f32. Default:
    /// every tensor as the file stores it, bit for bit.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub ty: Option<ImageType>,
}

fn parse_type(s: &str) -> Result<ImageType, String> {
    ImageType::parse(s).map_err(|e| e.to_string())
}

pub fn convert_cmd(a: ConvertArgs) -> Result<()> {
    let t0 = Instant::now();
    let st = convert(&a.model, &a.out, &ConvertOptions { to: a.ty }).with_context(|| {
        format!(
            "cannot convert {} to {}",
            a.model.display(),
            a.out.display()
        )
    })?;
    let mb = |b: u64| b as f64 / 1e6;
    let types = match a.ty {
        Some(t) => format!("{} converted to {t} (vectors to f32)", st.converted),
        None => "all as stored".to_string(),
    };
    eprintln!(
        "vtpu: wrote {}: {} pages ({} tensors, {types}, {:.1} MB; metadata page {} {:.1} MB); \
         sidecar {} {:.1} MB, manifest {:.1} KB; {:.0} ms (read and convert {:.0} ms, save {:.0} ms)",
        a.out.display(),
        st.pages,
        st.tensors,
        mb(st.tensor_bytes),
        metadata_coord(),
        mb(st.metadata_bytes),
        st.sidecar
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string()),
        mb(st.sidecar_bytes),
        st.manifest_bytes as f64 / 1e3,
        t0.elapsed().as_secs_f64() * 1e3,
        st.convert_ms,
        st.save_ms,
    );
    if !st.skipped.is_empty() {
        eprintln!(
            "vtpu: left out {} tensors that have no coordinate in the scheme (vtpu does not use them): {}",
            st.skipped.len(),
            st.skipped.join(", ")
        );
    }
    Ok(())
}
