//! `vtpu serve`: the OpenAI-compatible server (crates/server) on a model opened the way
//! every model command opens one (GGUF, Hugging Face directory or phext image).

use crate::cmd_model::{self, ModelArgs, ModelSource};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::Arc;
use vtpu_server::{Loaded, ModelEngine, ModelInfo, ServeConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (loopback by default: nothing outside this machine sees it).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the chosen port is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together (continuous batching: one batched step of the machine
    /// decodes every active sequence; each has KV rows of its own).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a slot; beyond, the server answers 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on every request (except GET / and /health).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Host memory for the prompt cache's stored sequences, in MiB.
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub cache_mem: usize,
    /// Save the whole prompt cache here (phext space) on shutdown and on
    /// `POST /slots/{id}?action=save`; restore it at start.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The model name clients use (default: the model file's name without extension).
    #[arg(long, value_name = "NAME")]
    pub alias: Option<String>,
}

pub fn serve_cmd(a: ServeArgs) -> Result<()> {
    if a.parallel == 0 || a.parallel > 256 {
        bail!("--parallel must be 1..=256, got {}", a.parallel);
    }
    if a.api_key.as_deref().is_some_and(str::is_empty) {
        bail!("--api-key is empty");
    }
    let cfg = ServeConfig {
        host: a.host.clone(),
        port: a.port,
        parallel: a.parallel,
        queue: a.queue,
        api_key: a.api_key.clone(),
        cache_mem: a.cache_mem.saturating_mul(1 << 20),
        cache_dir: a.cache_dir.clone(),
    };
    let model_args = a.model.clone();
    let alias = a.alias.clone();
    let parallel = a.parallel;
    let loader = Box::new(move || load(&model_args, alias, parallel).map_err(|e| format!("{e:#}")));
    vtpu_server::serve(cfg, loader)?;
    Ok(())
}

fn load(a: &ModelArgs, alias: Option<String>, parallel: usize) -> Result<Loaded> {
    let o = cmd_model::open(&a.model)?;
    let m = cmd_model::load_with_slots(&o, a, parallel)?;
    let id = alias.unwrap_or_else(|| model_id(&o.path));
    let (template, extra_eog) = template_and_eog(&o);
    let piece = |t: Option<u32>| {
        t.map(|i| String::from_utf8_lossy(&o.tok.token_to_piece(i, true)).into_owned())
            .unwrap_or_default()
    };
    let engine = ModelEngine::new(m)?;
    let info = ModelInfo {
        id,
        bos_text: piece(o.tok.bos()),
        eos_text: piece(o.tok.eos()),
        chat_template: template,
        extra_eog,
        ctx: vtpu_server::Engine::ctx(&engine),
        vocab: vtpu_server::Engine::vocab(&engine),
        parallel: parallel.min(vtpu_server::Engine::slots(&engine)),
        kv_restore: vtpu_server::Engine::can_restore(&engine),
        tokenizer: Arc::new(o.tok),
    };
    Ok(Loaded {
        engine: Box::new(engine),
        info,
    })
}

/// The name clients pass as `model`: the file name without its extension.
pub fn model_id(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vtpu".into())
}

/// The chat template (the tokenizer's, else a Hugging Face directory's) and the end
/// of generation ids a Hugging Face config adds.
pub fn template_and_eog(o: &cmd_model::Opened) -> (Option<String>, Vec<u32>) {
    let mut eog = Vec::new();
    let mut hf_template = None;
    if let ModelSource::Hf(s) = &o.src {
        let dir = s.model_dir();
        eog.extend(&dir.config.eos_token_ids);
        if let Some(g) = &dir.generation_config {
            eog.extend(&g.eos_token_ids);
        }
        hf_template = dir
            .tokenizer_config
            .as_ref()
            .and_then(|c| c.chat_template.clone());
    }
    let t = o.tok.chat_template().map(str::to_string).or(hf_template);
    (t, eog)
}
