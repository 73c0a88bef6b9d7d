//! A model loaded into phext space and running on a persistent session: token ids in,
//! the logits of the last one out, the KV cache in phext pages between calls.
//!
//! Nothing here computes model math: the host writes the token ids and the argument
//! page, signals the sentrons, and reads the logits page they wrote.

use super::config::ModelConfig;
use super::load::{ffn_split_align, model_pages, Capacity, LoadError, TensorSource};
use super::program::{model_program, model_program_batch, split_rows, vocab_chunks, ModelPlan};
use crate::layer_coords as lc;
use crate::layer_program::{LayerPlan, Packer};
use std::sync::Arc;
use std::time::Instant;
use vtpu_isa::Program;
use vtpu_phext::{DType, Layout, Page, PhextSpace, DEFAULT_PART_LIMIT};
use vtpu_runtime::{Counters, ExecutorKind, MachineError, ProgramMachine, RunConfig, Session};

/// How to build and run a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Sentrons (threads); default one per available core.
    pub sentrons: usize,
    /// Positions the KV cache holds; `None`: the model's training context, capped at
    /// [`DEFAULT_CTX_CAP`].
    pub ctx: Option<usize>,
    /// Tokens per call: longer prompts are processed in chunks of this many. Default
    /// 512, llama.cpp's ubatch: DTATTN takes llama.cpp's tiled path for calls of 64+
    /// tokens, so only the same chunks give llama.cpp's bits.
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
    /// Repack Q4_0 / Q5_0 / Q8_0 weight matrices at load into groups of 8 interleaved
    /// rows (the layout the decode kernels read fastest; the same numbers, so the same
    /// logits). Off: every quantized tensor is mapped from the file as it is.
    pub repack: bool,
    /// Sequences the model holds at once, each with KV rows of its own (`forward_seq`,
    /// `decode_batch`); with more than one, batched decode programs for 2, 4, ... up to
    /// the next power of two are built too (the whole-row split is required).
    pub slots: usize,
}

/// Runs the load's repacking jobs on up to `threads` threads (the sentrons' cores are
/// idle during load): buckets of about equal bytes, largest jobs first. The repacked
/// pages share one arena ([`PhextSpace::fill_arena`]: huge pages), mapped once all are
/// filled.
fn run_repacks(
    jobs: Vec<crate::model::load::RepackJob>,
    space: &PhextSpace,
    threads: usize,
) -> Result<(), LoadError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let specs: Vec<_> = jobs.iter().map(|j| j.spec()).collect();
    let mut arena = space.fill_arena(&specs).map_err(LoadError::from)?;
    let mut work: Vec<_> = jobs.into_iter().zip(arena.slices_mut()).collect();
    let threads = threads.clamp(1, 8).min(work.len());
    if threads <= 1 {
        work.into_iter().try_for_each(|(j, page)| j.fill(page))?;
    } else {
        work.sort_by_key(|(j, _)| std::cmp::Reverse(j.bytes()));
        let mut buckets: Vec<(usize, Vec<_>)> = (0..threads).map(|_| (0, Vec::new())).collect();
        for w in work {
            if let Some(b) = buckets.iter_mut().min_by_key(|b| b.0) {
                b.0 += w.0.bytes();
                b.1.push(w);
            }
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = buckets
                .into_iter()
                .map(|(_, ws)| {
                    s.spawn(move || ws.into_iter().try_for_each(|(j, page)| j.fill(page)))
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LoadError::Other("a repacking thread panicked".into())))
            })
        })?;
    }
    arena.commit(space).map_err(LoadError::from)
}

/// The largest number of slots (sequences held at once).
pub const MAX_SLOTS: usize = 64;

/// The default context when none is asked for: llama.cpp's `llama-cli` default.
pub const DEFAULT_CTX_CAP: usize = 4096;

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            sentrons: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ctx: None,
            max_tokens: 512,
            executor: ExecutorKind::Fast,
            layout: Layout::Insertion,
            pin: true,
            packer: Packer::Compiler,
            kernel_level: None,
            kv_type: DType::F16,
            whole_rows: true,
            repack: true,
            slots: 1,
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
    #[error("slot {slot} is outside 0..{slots}")]
    Slot { slot: usize, slots: usize },
    #[error("--parallel / slots {0} is outside 1..={MAX_SLOTS}")]
    Slots(usize),
    #[error("slot {0} appears twice in one batch")]
    DuplicateSlot(usize),
    #[error("batched decoding needs the whole-row split (--split rows) and at least one query head per sentron")]
    BatchSplit,
    #[error("KV snapshot: {0}")]
    Snapshot(String),
    #[error("phext space: {0}")]
    Space(String),
    #[error("the vTPU stopped: {0}")]
    Machine(#[from] MachineError),
    #[error("{0} is not available when the sentrons are spread over several processes")]
    Hosted(&'static str),
}

/// The pages one run exchanges with the host, for a machine whose sentrons are spread
/// over several processes (each with its own copy of every page): what the driving
/// process writes before a run, and which part of the logits each sentron writes.
#[derive(Clone, Debug)]
pub struct StepIo {
    /// Pages the host writes before each run (the argument page, the token ids); the
    /// driving process's copies are sent to every other process.
    pub inputs: Vec<vtpu_phext::Coord>,
    /// The f32 page the host reads after a run (the logits).
    pub output: vtpu_phext::Coord,
    /// Each sentron's vocabulary rows; for program `k` sentron `s` writes the f32
    /// elements `batch[k] * rows[s].start .. batch[k] * rows[s].end` of `output`.
    pub rows: Vec<std::ops::Range<usize>>,
    /// Batch rows of each program (1 for the one-sequence program).
    pub batch: Vec<usize>,
}

impl StepIo {
    /// The f32 elements of the output that sentrons `first..first + count` write in a
    /// run of program `k` (sentrons own consecutive rows, so it is one range).
    pub fn output_range(&self, k: usize, first: usize, count: usize) -> std::ops::Range<usize> {
        let b = self.batch.get(k).copied().unwrap_or(1);
        let lo = self.rows.get(first).map_or(0, |r| r.start);
        let hi = first
            .checked_add(count)
            .and_then(|e| e.checked_sub(1))
            .and_then(|l| self.rows.get(l))
            .map_or(lo, |r| r.end);
        b * lo..b * hi
    }
}

/// Starts the machine a model runs on, when that is not an in-process [`Session`]:
/// the MPI machine of `vtpu-mpi` hosts this process's share of the sentrons.
pub trait MachineHost {
    /// A machine for `programs` (compiled for `cfg.sentrons` sentrons in all) over this
    /// process's copy of the pages.
    fn start(
        &self,
        programs: &[Program],
        space: Arc<PhextSpace>,
        cfg: &RunConfig,
        io: &StepIo,
    ) -> Result<Box<dyn ProgramMachine>, MachineError>;
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
    /// Virtual: coordinate loads (SCLI) among the ops executed (the model programs have
    /// no loops, so each run executes each of its SCLIs once): ops/SIW without them.
    pub scli_ops: u64,
    /// Whether the first run counted here found the translation caches cold.
    pub cold_first: bool,
}

impl RunStats {
    /// Virtual: ops per SIW not counting coordinate loads (SCLI).
    pub fn ops_per_siw_without_scli(&self) -> f64 {
        let t = Counters::total(&self.counters);
        if t.siws == 0 {
            return 0.0;
        }
        t.total_ops().saturating_sub(self.scli_ops) as f64 / t.siws as f64
    }
}

/// Load statistics.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub mapped_bytes: usize,
    pub copied_bytes: usize,
    /// Weight bytes repacked into groups of 8 rows (`ModelOptions::repack`).
    pub repacked_bytes: usize,
    /// Host: building the program (SIW compiler) and the space.
    pub program_ms: f64,
    pub space_ms: f64,
    pub words: usize,
}

/// A model on the vTPU.
pub struct Model {
    pub cfg: ModelConfig,
    plan: ModelPlan,
    /// The one-sequence program, then the batched decode programs (`batches`).
    programs: Vec<Program>,
    /// Batch size of each batched program (`programs[i + 1]`), ascending.
    batches: Vec<usize>,
    /// SCLI ops of each program (all streams).
    scli: Vec<u64>,
    /// The vocabulary chunks of the logits (`vocab_chunks`), for reading batched logits.
    chunks: Vec<std::ops::Range<usize>>,
    /// Runs so far (the first one finds the translation caches cold).
    runs: u64,
    program: Program,
    space: Arc<PhextSpace>,
    machine: Machine,
    cap: Capacity,
    args: Arc<Page>,
    tokens: Arc<Page>,
    logits_page: Arc<Page>,
    logits: Vec<f32>,
    /// Logits of the last batched step, `[B, V]`, and its raw page block.
    batch_logits: Vec<f32>,
    batch_raw: Vec<f32>,
    ids: Vec<f32>,
    /// Positions in each slot's KV rows.
    pos: Vec<usize>,
    stats: RunStats,
    pub load: LoadStats,
}

enum Machine {
    Fast(Session),
    Reference(RunConfig),
    /// Started by a [`MachineHost`] (sentrons on several processes).
    Hosted(Box<dyn ProgramMachine>),
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
        Model::load_on(src, cfg, opts, None)
    }

    /// Like [`Model::load`], on a machine `host` starts (`opts.sentrons` is then the
    /// machine's sentron count over all processes).
    pub fn load_hosted<S: TensorSource + ?Sized>(
        src: &S,
        cfg: ModelConfig,
        opts: &ModelOptions,
        host: &dyn MachineHost,
    ) -> Result<Model, ModelError> {
        Model::load_on(src, cfg, opts, Some(host))
    }

    fn load_on<S: TensorSource + ?Sized>(
        src: &S,
        cfg: ModelConfig,
        opts: &ModelOptions,
        host: Option<&dyn MachineHost>,
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
        if opts.slots == 0 || opts.slots > MAX_SLOTS {
            return Err(ModelError::Slots(opts.slots));
        }
        let max_batch = if opts.slots > 1 {
            opts.slots.next_power_of_two()
        } else {
            1
        };
        let cap = Capacity {
            max_tokens: opts.max_tokens.min(ctx),
            ctx,
            kv_type: opts.kv_type,
            slots: opts.slots,
            max_batch,
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
        let mut programs = vec![program.clone()];
        let mut batches = Vec::new();
        if max_batch > 1 {
            if plan.layers.iter().any(|l| l.out_rows.is_none()) {
                return Err(ModelError::BatchSplit);
            }
            let mut b = 2;
            while b <= max_batch {
                programs.push(model_program_batch(&plan, opts.packer, b, max_batch)?);
                batches.push(b);
                b *= 2;
            }
        }
        let program_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let repack = opts.repack.then_some(plan.vocab_rows.as_slice());
        let pages = model_pages(src, &cfg, &plan.layers, cap, repack)?;
        let space = PhextSpace::build_placed(opts.layout, pages.placed, DEFAULT_PART_LIMIT)
            .map_err(LoadError::from)?;
        for m in pages.mapped {
            space
                .insert_mapped(m.coord, m.dtype, m.shape, m.map, m.offset)
                .map_err(LoadError::from)?;
        }
        run_repacks(pages.repack, &space, opts.sentrons)?;
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
        let machine = match (host, opts.executor) {
            (Some(h), _) => {
                let mut batch = vec![1];
                batch.extend(batches.iter().copied());
                let io = StepIo {
                    inputs: vec![lc::args(), lc::tokens()],
                    output: lc::logits(),
                    rows: plan.vocab_rows.clone(),
                    batch,
                };
                Machine::Hosted(h.start(&programs, Arc::clone(&space), &run_cfg, &io)?)
            }
            (None, ExecutorKind::Fast) => Machine::Fast(Session::with_programs(
                &programs,
                Arc::clone(&space),
                &run_cfg,
            )?),
            (None, ExecutorKind::Reference) => Machine::Reference(run_cfg),
        };
        let words = program.streams.iter().map(|s| s.words.len()).sum();
        Ok(Model {
            args: page(&space, lc::args())?,
            tokens: page(&space, lc::tokens())?,
            logits_page: page(&space, lc::logits())?,
            logits: vec![0.0; cfg.vocab],
            batch_logits: Vec::new(),
            batch_raw: Vec::new(),
            ids: Vec::with_capacity(cap.max_tokens.max(max_batch)),
            scli: programs
                .iter()
                .map(|p| {
                    p.streams
                        .iter()
                        .flat_map(|s| &s.words)
                        .flat_map(|w| w.slots)
                        .filter(|op| op.code == vtpu_isa::Opcode::SCli)
                        .count() as u64
                })
                .collect(),
            runs: 0,
            chunks: vocab_chunks(&plan),
            programs,
            batches,
            cfg,
            plan,
            program,
            space,
            machine,
            cap,
            pos: vec![0; opts.slots],
            stats: RunStats::default(),
            load: LoadStats {
                mapped_bytes: pages.mapped_bytes,
                copied_bytes: pages.copied_bytes,
                repacked_bytes: pages.repacked_bytes,
                program_ms,
                space_ms,
                words,
            },
        })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }
    /// The one-sequence program, then the batched decode programs (batch sizes
    /// [`Model::batch_sizes`]).
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }
    /// The batch size of each batched decode program (`programs()[i + 1]`).
    pub fn batch_sizes(&self) -> &[usize] {
        &self.batches
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
    /// Positions in slot 0's KV rows.
    pub fn pos(&self) -> usize {
        self.pos[0]
    }
    /// Start a new sequence in slot 0.
    pub fn reset(&mut self) {
        self.pos[0] = 0;
    }
    /// Drop slot 0's cache after position `pos` (keep the first `pos` positions).
    pub fn truncate(&mut self, pos: usize) {
        self.pos[0] = self.pos[0].min(pos);
    }
    /// Sequences held at once.
    pub fn slots(&self) -> usize {
        self.pos.len()
    }
    /// Positions in slot `slot`'s KV rows (0 for a slot out of range).
    pub fn seq_pos(&self, slot: usize) -> usize {
        self.pos.get(slot).copied().unwrap_or(0)
    }
    /// Keep the first `pos` positions of slot `slot` (nothing for a slot out of range).
    pub fn truncate_seq(&mut self, slot: usize, pos: usize) {
        if let Some(p) = self.pos.get_mut(slot) {
            *p = (*p).min(pos);
        }
    }
    fn check_slot(&self, slot: usize) -> Result<(), ModelError> {
        if slot >= self.pos.len() {
            return Err(ModelError::Slot {
                slot,
                slots: self.pos.len(),
            });
        }
        Ok(())
    }
    pub fn set_profile(&mut self, on: bool) {
        match &mut self.machine {
            Machine::Fast(s) => s.set_profile(on),
            Machine::Hosted(m) => m.set_profile(on),
            Machine::Reference(_) => {}
        }
    }

    /// Figures of the machine beyond the counters since the last call (the MPI
    /// machine: bytes to other processes, time blocked on them), one line each; none in
    /// process.
    pub fn take_machine_report(&mut self) -> Vec<String> {
        match &mut self.machine {
            Machine::Hosted(m) => m.take_extra_report(),
            _ => Vec::new(),
        }
    }

    /// On a process that hosts sentrons of a machine another process drives: run the
    /// steps it asks for until it ends the machine.
    pub fn follow(&mut self) -> Result<(), ModelError> {
        match &mut self.machine {
            Machine::Hosted(m) => Ok(m.follow()?),
            _ => Err(ModelError::Machine(MachineError::Setup(
                "this model runs in this process; there is nothing to follow".into(),
            ))),
        }
    }

    /// The counters and host time since the last call of this.
    pub fn take_stats(&mut self) -> RunStats {
        std::mem::take(&mut self.stats)
    }

    /// Append `tokens` to slot 0's sequence (in chunks of at most `max_tokens`) and
    /// return the logits `[V]` of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.forward_seq(0, tokens)
    }

    fn check_tokens(&self, ids: impl IntoIterator<Item = u32>) -> Result<(), ModelError> {
        for (index, id) in ids.into_iter().enumerate() {
            if id as usize >= self.cfg.vocab {
                return Err(ModelError::Token {
                    id,
                    index,
                    vocab: self.cfg.vocab,
                });
            }
        }
        Ok(())
    }

    /// Append `tokens` to slot `slot`'s sequence and return the logits of the last one.
    pub fn forward_seq(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.check_slot(slot)?;
        if tokens.is_empty() {
            return Err(ModelError::NoTokens);
        }
        let pos = self.pos[slot];
        if pos + tokens.len() > self.cap.ctx {
            return Err(ModelError::ContextFull {
                pos,
                tokens: tokens.len(),
                ctx: self.cap.ctx,
            });
        }
        self.check_tokens(tokens.iter().copied())?;
        for chunk in tokens.chunks(self.cap.max_tokens) {
            self.run_chunk(slot, chunk)?;
        }
        Ok(&self.logits)
    }

    /// One token for each `(slot, token)` (distinct slots), decoded together: every
    /// weight is read once for all of them. Returns `batch.len()` rows of `[V]` logits.
    /// A single entry runs the one-sequence program; larger batches the batched program
    /// of the next power of two (padding rows decode in a spare KV region).
    pub fn decode_batch(&mut self, batch: &[(usize, u32)]) -> Result<&[f32], ModelError> {
        let v = self.cfg.vocab;
        if batch.is_empty() {
            return Err(ModelError::NoTokens);
        }
        for (i, &(slot, _)) in batch.iter().enumerate() {
            self.check_slot(slot)?;
            if batch[..i].iter().any(|&(s, _)| s == slot) {
                return Err(ModelError::DuplicateSlot(slot));
            }
            if self.pos[slot] + 1 > self.cap.ctx {
                return Err(ModelError::ContextFull {
                    pos: self.pos[slot],
                    tokens: 1,
                    ctx: self.cap.ctx,
                });
            }
        }
        self.check_tokens(batch.iter().map(|&(_, t)| t))?;
        self.batch_logits.clear();
        let Some(k) = self.batches.iter().position(|&b| b >= batch.len()) else {
            // One at a time (a model built with one slot, or a single entry).
            for &(slot, tok) in batch {
                self.run_chunk(slot, &[tok])?;
                let l = std::mem::take(&mut self.logits);
                self.batch_logits.extend_from_slice(&l);
                self.logits = l;
            }
            return Ok(&self.batch_logits);
        };
        if batch.len() == 1 {
            let (slot, tok) = batch[0];
            self.run_chunk(slot, &[tok])?;
            self.batch_logits.extend_from_slice(&self.logits);
            return Ok(&self.batch_logits);
        }
        let pb = self.batches[k];
        let space_err = |e: vtpu_phext::PageError| ModelError::Space(e.to_string());
        // Padding rows: token 0 at position 0 of the spare region after the last slot.
        let spare = self.pos.len() * self.cap.ctx;
        self.ids.clear();
        self.ids.extend(batch.iter().map(|&(_, id)| id as f32));
        self.ids.resize(pb, 0.0);
        self.tokens.write_f32(0, &self.ids).map_err(space_err)?;
        let ctx = self.cap.ctx;
        let pos = &self.pos;
        self.args
            .write(|b| {
                b[0..4].copy_from_slice(&(pb as i32).to_le_bytes());
                for i in 0..pb {
                    let (p, base) = match batch.get(i) {
                        Some(&(slot, _)) => (pos[slot], slot * ctx),
                        None => (0, spare),
                    };
                    let at = 4 * (4 + 2 * i);
                    b[at..at + 4].copy_from_slice(&(p as i32).to_le_bytes());
                    b[at + 4..at + 8].copy_from_slice(&(base as i32).to_le_bytes());
                }
            })
            .map_err(space_err)?;
        // Padding rows are not tokens: the stats count the batch.
        self.run_program(k + 1, batch.len())?;
        self.batch_raw.resize(pb * v, 0.0);
        self.logits_page
            .read_f32(0, &mut self.batch_raw)
            .map_err(space_err)?;
        self.batch_logits.resize(batch.len() * v, 0.0);
        for c in &self.chunks {
            let w = c.len();
            for i in 0..batch.len() {
                let from = pb * c.start + i * w;
                self.batch_logits[i * v + c.start..i * v + c.end]
                    .copy_from_slice(&self.batch_raw[from..from + w]);
            }
        }
        for &(slot, _) in batch {
            self.pos[slot] += 1;
        }
        Ok(&self.batch_logits)
    }

    /// A fingerprint of the model and its KV layout (a snapshot restores only into a
    /// model with the same one).
    pub fn fingerprint(&self) -> u64 {
        let c = &self.cfg;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |x: u64| {
            h ^= x;
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        for x in [
            c.vocab,
            c.n_layers,
            c.layer.dim,
            c.layer.n_heads,
            c.layer.n_kv_heads,
            c.layer.head_dim,
            c.layer.ffn_dim,
            self.plan.sentrons(),
        ] {
            mix(x as u64);
        }
        mix(u64::from(self.cap.kv_type == DType::F16));
        mix(u64::from(c.layer.rope_theta.to_bits()));
        h
    }

    /// The KV pages of the model, in a fixed order (layer, part, keys then values).
    fn kv_pages(&self) -> Result<Vec<Arc<Page>>, ModelError> {
        if matches!(self.machine, Machine::Hosted(_)) {
            // Each process holds the KV rows of its own sentrons' heads only.
            return Err(ModelError::Hosted("a KV snapshot"));
        }
        let mut out = Vec::new();
        for lp in &self.plan.layers {
            for part in lp.parts() {
                for value in [false, true] {
                    let c = lc::kv_cache(lp.layer, part.index, value)
                        .map_err(|e| ModelError::Space(e.to_string()))?;
                    out.push(page(&self.space, c)?);
                }
            }
        }
        Ok(out)
    }

    /// The first `n` positions of slot `slot` (its KV rows, every page).
    pub fn kv_snapshot(&self, slot: usize, n: usize) -> Result<KvSnapshot, ModelError> {
        self.check_slot(slot)?;
        if n > self.pos[slot] {
            return Err(ModelError::Snapshot(format!(
                "slot {slot} holds {} positions, not {n}",
                self.pos[slot]
            )));
        }
        let row = self.cfg.layer.head_dim * self.cap.kv_type.bytes_for(1).unwrap_or(4);
        let from = slot * self.cap.ctx * row;
        let pages = self
            .kv_pages()?
            .iter()
            .map(|p| p.read(|b| b.get(from..from + n * row).map(<[u8]>::to_vec)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ModelError::Snapshot("a KV page is shorter than its slots".into()))?;
        Ok(KvSnapshot {
            pos: n,
            dtype: self.cap.kv_type,
            model_fingerprint: self.fingerprint(),
            pages,
        })
    }

    /// Put a snapshot's positions into slot `slot` (which then holds exactly them).
    pub fn kv_restore(&mut self, slot: usize, s: &KvSnapshot) -> Result<(), ModelError> {
        self.check_slot(slot)?;
        if s.model_fingerprint != self.fingerprint() || s.dtype != self.cap.kv_type {
            return Err(ModelError::Snapshot(
                "the snapshot is of another model or KV layout".into(),
            ));
        }
        if s.pos > self.cap.ctx {
            return Err(ModelError::Snapshot(format!(
                "{} positions do not fit the context of {}",
                s.pos, self.cap.ctx
            )));
        }
        let row = self.cfg.layer.head_dim * self.cap.kv_type.bytes_for(1).unwrap_or(4);
        let pages = self.kv_pages()?;
        if pages.len() != s.pages.len() || s.pages.iter().any(|p| p.len() != s.pos * row) {
            return Err(ModelError::Snapshot(format!(
                "{} pages of {} positions expected",
                pages.len(),
                s.pos
            )));
        }
        let from = slot * self.cap.ctx * row;
        for (p, bytes) in pages.iter().zip(&s.pages) {
            p.write(|b| {
                if let Some(d) = b.get_mut(from..from + bytes.len()) {
                    d.copy_from_slice(bytes);
                }
            })
            .map_err(|e| ModelError::Space(e.to_string()))?;
        }
        self.pos[slot] = s.pos;
        Ok(())
    }

    fn run_chunk(&mut self, slot: usize, chunk: &[u32]) -> Result<(), ModelError> {
        let space_err = |e: vtpu_phext::PageError| ModelError::Space(e.to_string());
        let t = chunk.len();
        self.ids.clear();
        // Ids are exact in f32 (the vocabulary is capped far below 2^24).
        self.ids.extend(chunk.iter().map(|&id| id as f32));
        self.tokens.write_f32(0, &self.ids).map_err(space_err)?;
        let pos = self.pos[slot];
        let base = slot * self.cap.ctx;
        self.args
            .write(|b| {
                b[0..4].copy_from_slice(&(t as i32).to_le_bytes());
                b[4..8].copy_from_slice(&(pos as i32).to_le_bytes());
                b[8..12].copy_from_slice(&(base as i32).to_le_bytes());
            })
            .map_err(space_err)?;
        self.run_program(0, t)?;
        self.logits_page
            .read_f32(0, &mut self.logits)
            .map_err(space_err)?;
        self.pos[slot] += t;
        Ok(())
    }

    /// Run program `k` (`t` tokens) and add its counters to the stats.
    fn run_program(&mut self, k: usize, t: usize) -> Result<(), ModelError> {
        let (counters, host_ns, profile) = match &mut self.machine {
            Machine::Fast(s) => {
                let r = s.run_program(k)?;
                (r.counters, r.host_wall_ns, r.profile)
            }
            Machine::Reference(cfg) => {
                let r = vtpu_runtime::run(&self.programs[k], &self.space, cfg)?;
                (r.counters, r.host_wall_ns, None)
            }
            Machine::Hosted(m) => {
                let r = m.run_program(k)?;
                (r.counters, r.host_wall_ns, r.profile)
            }
        };
        let st = &mut self.stats;
        if st.calls == 0 {
            st.cold_first = self.runs == 0;
        }
        self.runs += 1;
        st.calls += 1;
        st.tokens += t as u64;
        st.host_ns += host_ns;
        st.scli_ops += self.scli.get(k).copied().unwrap_or(0);
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

/// Positions of one slot's KV cache, copied out of phext space (one byte vector per KV
/// page, in the model's page order, `pos` rows each).
#[derive(Clone, Debug, PartialEq)]
pub struct KvSnapshot {
    pub pos: usize,
    pub dtype: DType,
    pub model_fingerprint: u64,
    pub pages: Vec<Vec<u8>>,
}

impl KvSnapshot {
    /// Bytes of KV it holds.
    pub fn bytes(&self) -> usize {
        self.pages.iter().map(Vec::len).sum()
    }
}
