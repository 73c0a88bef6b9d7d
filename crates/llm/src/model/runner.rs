//! A model loaded into phext space and running on a persistent session: token ids in,
//! the logits of the last one out, the KV cache in phext pages between calls.
//!
//! Nothing here computes model math: the host writes the token ids and the argument
//! page, signals the sentrons, and reads the logits page they wrote.

use super::config::ModelConfig;
use super::load::{ffn_split_align, model_pages, Capacity, LoadError, TensorSource};
use super::program::{model_program, split_rows, ModelPlan};
use crate::layer_coords as lc;
use crate::layer_program::{LayerPlan, Packer};
use std::sync::Arc;
use std::time::Instant;
use vtpu_isa::Program;
use vtpu_phext::{DType, Layout, Page, PhextSpace, DEFAULT_PART_LIMIT};
use vtpu_runtime::{Counters, ExecutorKind, MachineError, RunConfig, Session};

/// How to build and run a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Sentrons (threads); default one per available core.
    pub sentrons: usize,
    /// Positions the KV cache holds; `None`: the model's training context, capped at
    /// [`DEFAULT_CTX_CAP`].
    pub ctx: Option<usize>,
    /// Tokens per call: longer prompts are processed in chunks of this many.
    pub max_tokens: usize,
    pub executor: ExecutorKind,
    pub layout: Layout,
    pub pin: bool,
    pub packer: Packer,
    pub kernel_level: Option<vtpu_kernels::KernelLevel>,
    /// Element type of the KV cache pages: `F16` (default, as llama.cpp's: half the
    /// cache memory and bandwidth; each key and value is rounded to nearest even when it
    /// is stored, and attention accumulates in f16 as llama.cpp's flash attention does)
    /// or `F32`. Anything else is [`ModelError::KvType`].
    pub kv_type: DType,
    /// How each layer's products are split over sentrons: `true` (default) the
    /// whole-row split, whose arithmetic is llama.cpp's for any sentron count; `false`
    /// the column split (fewer all-reduces, partial products summed). See
    /// [`LayerPlan::out_rows`].
    pub whole_rows: bool,
}

/// The default context when none is asked for: llama.cpp's `llama-cli` default.
pub const DEFAULT_CTX_CAP: usize = 4096;

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            sentrons: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ctx: None,
            max_tokens: 128,
            executor: ExecutorKind::Fast,
            layout: Layout::Insertion,
            pin: true,
            packer: Packer::Compiler,
            kernel_level: None,
            kv_type: DType::F16,
            whole_rows: true,
        }
    }
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("--ctx {ctx} is outside 1..={max} (the model was trained on {max} positions)")]
    Ctx { ctx: usize, max: usize },
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("KV cache type {} is not supported (f32 or f16)", .0.name())]
    KvType(DType),
    #[error("{tokens} tokens at position {pos} do not fit the context of {ctx} positions")]
    ContextFull {
        pos: usize,
        tokens: usize,
        ctx: usize,
    },
    #[error("token id {id} at index {index} is outside the vocabulary of {vocab}")]
    Token { id: u32, index: usize, vocab: usize },
    #[error("a call needs at least one token")]
    NoTokens,
    #[error("phext space: {0}")]
    Space(String),
    #[error("the vTPU stopped: {0}")]
    Machine(#[from] MachineError),
}

/// What the calls since the last `take_stats` measured: virtual counters summed per
/// sentron, and host time.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub calls: u64,
    pub tokens: u64,
    pub counters: Vec<Counters>,
    /// Host: wall time of the machine runs.
    pub host_ns: u64,
    /// Per-opcode host time of all sentrons, when profiling is on.
    pub profile: Option<vtpu_runtime::OpProfile>,
}

/// Load statistics.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub mapped_bytes: usize,
    pub copied_bytes: usize,
    /// Host: building the program (SIW compiler) and the space.
    pub program_ms: f64,
    pub space_ms: f64,
    pub words: usize,
}

/// A model on the vTPU.
pub struct Model {
    pub cfg: ModelConfig,
    plan: ModelPlan,
    program: Program,
    space: Arc<PhextSpace>,
    machine: Machine,
    cap: Capacity,
    args: Arc<Page>,
    tokens: Arc<Page>,
    logits_page: Arc<Page>,
    logits: Vec<f32>,
    ids: Vec<f32>,
    pos: usize,
    stats: RunStats,
    pub load: LoadStats,
}

enum Machine {
    Fast(Session),
    Reference(RunConfig),
}

fn page(space: &PhextSpace, c: vtpu_phext::Coord) -> Result<Arc<Page>, ModelError> {
    space
        .get(c)
        .ok_or_else(|| ModelError::Space(format!("page {c} missing after build")))
}

impl Model {
    /// Place `src`'s tensors in phext space, build the program and start the sentrons.
    pub fn load<S: TensorSource + ?Sized>(
        src: &S,
        cfg: ModelConfig,
        opts: &ModelOptions,
    ) -> Result<Model, ModelError> {
        let max = cfg.layer.max_seq;
        let ctx = opts.ctx.unwrap_or(max.min(DEFAULT_CTX_CAP));
        if ctx == 0 || ctx > max {
            return Err(ModelError::Ctx { ctx, max });
        }
        if opts.max_tokens == 0 {
            return Err(ModelError::Zero { what: "max_tokens" });
        }
        if opts.sentrons == 0 {
            return Err(ModelError::Zero { what: "threads" });
        }
        if !matches!(opts.kv_type, DType::F32 | DType::F16) {
            return Err(ModelError::KvType(opts.kv_type));
        }
        let cap = Capacity {
            max_tokens: opts.max_tokens.min(ctx),
            ctx,
            kv_type: opts.kv_type,
        };
        let t0 = Instant::now();
        let align = ffn_split_align(src, &cfg)?;
        let mut layer_cfg = cfg.layer.clone();
        layer_cfg.max_seq = ctx;
        let layers = (0..cfg.n_layers)
            .map(|l| {
                LayerPlan::with_ffn_align(&layer_cfg, l, opts.sentrons, align).map(|p| {
                    if opts.whole_rows {
                        p.whole_rows()
                    } else {
                        p
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(LoadError::from)?;
        let plan = ModelPlan {
            layers,
            vocab_rows: split_rows(cfg.vocab, opts.sentrons),
            vocab: cfg.vocab,
            dim: cfg.layer.dim,
            rms_eps: cfg.layer.rms_eps,
            tied: cfg.tied_embeddings,
        };
        let program = model_program(&plan, opts.packer)?;
        let program_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let pages = model_pages(src, &cfg, &plan.layers, cap)?;
        let space = PhextSpace::build_placed(opts.layout, pages.placed, DEFAULT_PART_LIMIT)
            .map_err(LoadError::from)?;
        for m in pages.mapped {
            space
                .insert_mapped(m.coord, m.dtype, m.shape, m.map, m.offset)
                .map_err(LoadError::from)?;
        }
        let space = Arc::new(space);
        let space_ms = t1.elapsed().as_secs_f64() * 1e3;
        // A translation cache that holds every page a token touches (weights of all
        // layers, KV pages, run state), so a warm session hits on every lookup; the
        // default 64 x 4 is sized for single programs, not whole models.
        let n_pages = space.len();
        let run_cfg = RunConfig {
            sentrons: opts.sentrons,
            executor: opts.executor,
            pin: opts.pin,
            kernel_level: opts.kernel_level,
            tlb_sets: (2 * n_pages / 4).next_power_of_two().clamp(64, 4096),
            tlb_ways: 4,
            ..RunConfig::default()
        };
        let machine = match opts.executor {
            ExecutorKind::Fast => {
                Machine::Fast(Session::new(&program, Arc::clone(&space), &run_cfg)?)
            }
            ExecutorKind::Reference => Machine::Reference(run_cfg),
        };
        let words = program.streams.iter().map(|s| s.words.len()).sum();
        Ok(Model {
            args: page(&space, lc::args())?,
            tokens: page(&space, lc::tokens())?,
            logits_page: page(&space, lc::logits())?,
            logits: vec![0.0; cfg.vocab],
            ids: Vec::with_capacity(cap.max_tokens),
            cfg,
            plan,
            program,
            space,
            machine,
            cap,
            pos: 0,
            stats: RunStats::default(),
            load: LoadStats {
                mapped_bytes: pages.mapped_bytes,
                copied_bytes: pages.copied_bytes,
                program_ms,
                space_ms,
                words,
            },
        })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }
    pub fn plan(&self) -> &ModelPlan {
        &self.plan
    }
    pub fn space(&self) -> &PhextSpace {
        &self.space
    }
    pub fn capacity(&self) -> Capacity {
        self.cap
    }
    /// Positions in the KV cache.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Start a new sequence.
    pub fn reset(&mut self) {
        self.pos = 0;
    }
    /// Drop the cache after position `pos` (keep the first `pos` positions).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }
    pub fn set_profile(&mut self, on: bool) {
        if let Machine::Fast(s) = &mut self.machine {
            s.set_profile(on);
        }
    }

    /// The counters and host time since the last call of this.
    pub fn take_stats(&mut self) -> RunStats {
        std::mem::take(&mut self.stats)
    }

    /// Append `tokens` to the sequence (in chunks of at most `max_tokens`) and return
    /// the logits `[V]` of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::NoTokens);
        }
        if self.pos + tokens.len() > self.cap.ctx {
            return Err(ModelError::ContextFull {
                pos: self.pos,
                tokens: tokens.len(),
                ctx: self.cap.ctx,
            });
        }
        for (index, &id) in tokens.iter().enumerate() {
            if id as usize >= self.cfg.vocab {
                return Err(ModelError::Token {
                    id,
                    index,
                    vocab: self.cfg.vocab,
                });
            }
        }
        for chunk in tokens.chunks(self.cap.max_tokens) {
            self.run_chunk(chunk)?;
        }
        Ok(&self.logits)
    }

    fn run_chunk(&mut self, chunk: &[u32]) -> Result<(), ModelError> {
        let space_err = |e: vtpu_phext::PageError| ModelError::Space(e.to_string());
        let t = chunk.len();
        self.ids.clear();
        // Ids are exact in f32 (the vocabulary is capped far below 2^24).
        self.ids.extend(chunk.iter().map(|&id| id as f32));
        self.tokens.write_f32(0, &self.ids).map_err(space_err)?;
        let pos = self.pos;
        self.args
            .write(|b| {
                b[0..4].copy_from_slice(&(t as i32).to_le_bytes());
                b[4..8].copy_from_slice(&(pos as i32).to_le_bytes());
            })
            .map_err(space_err)?;
        let (counters, host_ns, profile) = match &mut self.machine {
            Machine::Fast(s) => {
                let r = s.run()?;
                (r.counters, r.host_wall_ns, r.profile)
            }
            Machine::Reference(cfg) => {
                let r = vtpu_runtime::run(&self.program, &self.space, cfg)?;
                (r.counters, r.host_wall_ns, None)
            }
        };
        self.logits_page
            .read_f32(0, &mut self.logits)
            .map_err(space_err)?;
        self.pos += t;
        let st = &mut self.stats;
        st.calls += 1;
        st.tokens += t as u64;
        st.host_ns += host_ns;
        match (&mut st.profile, profile) {
            (Some(acc), Some(p)) => acc.merge(&p),
            (acc @ None, p) => *acc = p,
            _ => {}
        }
        if st.counters.is_empty() {
            st.counters = counters;
        } else {
            for (acc, c) in st.counters.iter_mut().zip(&counters) {
                let (id, host) = (acc.sentron, acc.host_ns + c.host_ns);
                *acc = Counters::total(&[acc.clone(), c.clone()]);
                acc.sentron = id;
                acc.host_ns = host;
            }
        }
        Ok(())
    }
}
