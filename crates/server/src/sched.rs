//! The engine thread: continuous batching and the prompt cache.
//!
//! One OS thread owns the [`Engine`] (the model's sentrons are pinned worker threads
//! of their own; a model call must not run inside an async task). HTTP handlers send
//! it [`Cmd`]s over a channel and receive [`Event`]s back over a per-request channel.
//!
//! Each loop turn: take new commands; drop sequences whose client went away (their
//! slot is free at once); admit queued requests into free slots (find the longest
//! cached prefix, prefill the rest, sample the first token); then one decode step for
//! every active sequence together (`Engine::decode` reads the weights once for the
//! whole batch). A request that arrives while others decode joins at the next turn.
//!
//! Prompt cache: a slot keeps its sequence's KV after the request ends. A new prompt
//! starts from the longest prefix found in any slot or in the [`Store`] of snapshots;
//! a slot's sequence is snapshotted into the store before the slot is overwritten.
//! `--cache-dir` saves slots and store to one phext file on shutdown and on request.

use crate::api::{ApiError, Params};
use crate::cache::{common_prefix, Entry, Store};
use crate::cache_file;
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use vtpu_llm::sampler::Sampler;
use vtpu_tokenizer::{Tokenizer, Utf8Stream};

/// What the async side needs to know about the loaded model.
pub struct ModelInfo {
    /// The name clients pass as `model`.
    pub id: String,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<String>,
    /// BOS / EOS token text for the template.
    pub bos_text: String,
    pub eos_text: String,
    /// End-of-generation ids beyond the tokenizer's own (Hugging Face configs).
    pub extra_eog: Vec<u32>,
    pub ctx: usize,
    pub vocab: usize,
    /// Sequences decoded together.
    pub parallel: usize,
    /// Whether cached prefixes are restored by copying KV (else recomputed).
    pub kv_restore: bool,
}

/// What the loader (run on the engine thread) gives back.
pub struct Loaded {
    pub engine: Box<dyn Engine>,
    pub info: ModelInfo,
}

/// Builds the model on the engine thread (so it never has to cross threads).
pub type Loader = Box<dyn FnOnce() -> Result<Loaded, String> + Send>;

/// One completion request, checked and tokenized.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: Params,
    /// Resolved against the context by the handler.
    pub max_tokens: usize,
    pub tx: UnboundedSender<Event>,
}

/// Why generation ended, and what it cost.
#[derive(Clone, Debug)]
pub struct Finish {
    pub reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub timings: Timings,
}

/// `timings` as llama-server reports them: `cache_n` prompt tokens came from the
/// prompt cache, `prompt_n` were computed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub cache_n: usize,
    pub prompt_n: usize,
    pub prompt_ms: f64,
    pub prompt_per_second: f64,
    pub predicted_n: usize,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
}

/// From the engine thread to one request.
#[derive(Debug)]
pub enum Event {
    /// More text of the answer.
    Text(String),
    /// The last event of a successful request.
    Done(Finish),
    /// The request failed; nothing follows.
    Error(ApiError),
}

/// `POST /slots/{id}?action=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotAction {
    Save,
    Restore,
    Erase,
}

pub enum Cmd {
    Job(Job),
    Slots(oneshot::Sender<serde_json::Value>),
    Slot {
        id: usize,
        action: SlotAction,
        filename: Option<String>,
        reply: oneshot::Sender<Result<serde_json::Value, ApiError>>,
    },
    Shutdown,
}

/// State shared by the engine thread and the handlers.
pub struct Shared {
    pub info: OnceLock<Arc<ModelInfo>>,
    pub load_error: OnceLock<String>,
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Requests sent to the engine and not yet in a slot (the queue).
    pub waiting: std::sync::atomic::AtomicUsize,
    pub metrics: Metrics,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            info: OnceLock::new(),
            load_error: OnceLock::new(),
            shutting_down: Default::default(),
            waiting: Default::default(),
            metrics: Metrics::default(),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedConfig {
    pub parallel: usize,
    pub cache_mem: usize,
    pub cache_dir: Option<PathBuf>,
}

/// The file name of the prompt cache in `--cache-dir` unless a request names another.
pub const DEFAULT_CACHE_FILE: &str = "prompt-cache.phext";
/// Prefixes shorter than this are not worth copying KV for. A restore copies KV rows
/// (measured: 5-27 ms for a 28-token SmolLM2 prefix, 0.6 MB, on the loaded dev machine)
/// while computing costs 2-11 ms per token there, so anything past one token pays.
const MIN_COPY_TOKENS: usize = 2;

/// A sequence being generated in a slot.
struct Seq {
    job: Job,
    sampler: Sampler,
    /// The sampled token not yet fed to the model.
    next: u32,
    generated: usize,
    utf8: Utf8Stream,
    /// Decoded text not yet sent (it may be the start of a stop string).
    pending: String,
    timings: Timings,
    t_decode: Instant,
}

#[derive(Default)]
struct Slot {
    /// Tokens whose KV the slot holds (`engine.seq_pos(slot) == tokens.len()`).
    tokens: Vec<u32>,
    seq: Option<Seq>,
    last_used: u64,
}

struct Sched {
    engine: Box<dyn Engine>,
    info: Arc<ModelInfo>,
    shared: Arc<Shared>,
    cfg: SchedConfig,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    store: Store,
    clock: u64,
}

/// Runs the engine thread until `Cmd::Shutdown` (or every sender is gone).
pub fn run(loader: Loader, cfg: SchedConfig, rx: Receiver<Cmd>, shared: Arc<Shared>) {
    let t0 = Instant::now();
    let loaded = match loader() {
        Ok(l) => l,
        Err(e) => {
            let _ = shared.load_error.set(e);
            // Answer whoever asks until the server stops.
            drain_after_failure(&rx, &shared);
            return;
        }
    };
    let info = Arc::new(loaded.info);
    let parallel = cfg.parallel.clamp(1, loaded.engine.slots().max(1));
    let mut s = Sched {
        slots: (0..parallel).map(|_| Slot::default()).collect(),
        engine: loaded.engine,
        info: Arc::clone(&info),
        shared: Arc::clone(&shared),
        store: Store::new(cfg.cache_mem),
        cfg,
        queue: VecDeque::new(),
        clock: 0,
    };
    s.restore_at_start();
    let _ = shared.info.set(info);
    eprintln!(
        "vtpu serve: ready in {:.0} ms ({} slot(s) decoded together)",
        t0.elapsed().as_secs_f64() * 1e3,
        parallel
    );
    s.run(&rx);
}

fn drain_after_failure(rx: &Receiver<Cmd>, shared: &Shared) {
    let msg = shared.load_error.get().cloned().unwrap_or_default();
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Job(j) => {
                let _ = j.tx.send(Event::Error(ApiError::unavailable(format!(
                    "the model failed to load: {msg}"
                ))));
            }
            Cmd::Slots(r) => {
                let _ = r.send(serde_json::json!([]));
            }
            Cmd::Slot { reply, .. } => {
                let _ = reply.send(Err(ApiError::unavailable("the model failed to load")));
            }
            Cmd::Shutdown => return,
        }
    }
}

impl Sched {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn busy(&self) -> bool {
        !self.queue.is_empty() || self.slots.iter().any(|s| s.seq.is_some())
    }

    fn run(&mut self, rx: &Receiver<Cmd>) {
        loop {
            // Block only when there is nothing to compute.
            let first = if self.busy() {
                rx.try_recv().ok()
            } else {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.shutdown();
                        return;
                    }
                }
            };
            let mut stop = false;
            for cmd in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match cmd {
                    Cmd::Job(j) => self.queue.push_back(j),
                    Cmd::Slots(r) => {
                        let _ = r.send(self.slots_json());
                    }
                    Cmd::Slot {
                        id,
                        action,
                        filename,
                        reply,
                    } => {
                        let _ = reply.send(self.slot_action(id, action, filename));
                    }
                    Cmd::Shutdown => stop = true,
                }
            }
            if stop {
                self.shutdown();
                return;
            }
            self.drop_cancelled();
            self.admit();
            self.decode_step();
            self.publish_gauges();
        }
    }

    /// Clients that went away: their slot is free now; their queue place too.
    fn drop_cancelled(&mut self) {
        let m = &self.shared.metrics;
        for slot in &mut self.slots {
            if slot.seq.as_ref().is_some_and(|q| q.job.tx.is_closed()) {
                slot.seq = None;
                m.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        let before = self.queue.len();
        self.queue.retain(|j| !j.tx.is_closed());
        let gone = before - self.queue.len();
        if gone > 0 {
            self.shared.waiting.fetch_sub(gone, Ordering::AcqRel);
            m.cancelled.fetch_add(gone as u64, Ordering::Relaxed);
        }
    }

    fn admit(&mut self) {
        while !self.queue.is_empty() {
            let Some(target) = self.pick_slot() else {
                return;
            };
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            self.start(target, job);
        }
    }

    /// A free slot for the queue's first prompt: the one already holding the longest
    /// prefix of it, else an empty one, else the least recently used.
    fn pick_slot(&self) -> Option<usize> {
        let prompt = &self.queue.front()?.prompt;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.seq.is_none())
            .max_by_key(|(_, s)| {
                (
                    common_prefix(&s.tokens, prompt),
                    s.tokens.is_empty(),
                    std::cmp::Reverse(s.last_used),
                )
            })
            .map(|(i, _)| i)
    }

    /// Keeps slot `i`'s sequence in the store before it is overwritten (unless the
    /// store or another slot already holds it).
    fn preserve(&mut self, i: usize, keep: usize) {
        if !self.engine.can_restore() {
            return;
        }
        let toks = &self.slots[i].tokens;
        if toks.len() <= keep || toks.len() < MIN_COPY_TOKENS || self.store.covers(toks) {
            return;
        }
        let held_elsewhere = self.slots.iter().enumerate().any(|(j, s)| {
            j != i && s.tokens.len() >= toks.len() && s.tokens[..toks.len()] == **toks
        });
        if held_elsewhere {
            return;
        }
        let n = toks.len();
        match self.engine.snapshot(i, n) {
            Ok(snap) => {
                let entry = Entry {
                    tokens: self.slots[i].tokens.clone(),
                    snap,
                    last_used: self.slots[i].last_used,
                };
                self.store.insert(entry);
            }
            Err(e) => eprintln!("vtpu serve: prompt cache: cannot snapshot slot {i}: {e}"),
        }
    }

    /// Puts the longest cached prefix of `prompt` into slot `i`; returns
    /// (positions kept, positions recomputed to get them).
    fn reuse_prefix(&mut self, i: usize, prompt: &[u32]) -> Result<(usize, usize), EngineError> {
        // At least one prompt token is computed: its logits give the first token.
        let limit = prompt.len().saturating_sub(1);
        let own = common_prefix(&self.slots[i].tokens, prompt).min(limit);
        let other_slot = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, s)| (j, common_prefix(&s.tokens, prompt).min(limit)))
            .max_by_key(|&(_, n)| n);
        let stored = self
            .store
            .longest_prefix(prompt)
            .map(|(e, n)| (e, n.min(limit)));
        let best_other = other_slot.map_or(0, |x| x.1);
        let best_store = stored.map_or(0, |x| x.1);
        // An engine that recomputes on restore gains nothing from another copy.
        if !self.engine.can_restore() || best_other.max(best_store) < own + MIN_COPY_TOKENS {
            self.preserve(i, own);
            self.engine.truncate_seq(i, own);
            self.slots[i].tokens.truncate(own);
            return Ok((own, 0));
        }
        self.preserve(i, 0);
        let now = self.tick();
        if best_other >= best_store {
            let (j, n) = other_slot.unwrap_or((i, 0));
            let snap = self.engine.snapshot(j, n)?;
            let tokens = self.slots[j].tokens[..n].to_vec();
            let recomputed = self.restore_into(i, &snap, tokens)?;
            Ok((n, recomputed))
        } else {
            let (e, n) = stored.unwrap_or((0, 0));
            self.store.touch(e, now);
            let Some(entry) = self.store.get(e) else {
                return Ok((0, 0));
            };
            let (snap, tokens) = (entry.snap.clone(), entry.tokens.clone());
            let recomputed = self.restore_into(i, &snap, tokens)?;
            self.engine.truncate_seq(i, n);
            self.slots[i].tokens.truncate(n);
            Ok((n, recomputed.min(n)))
        }
    }

    fn restore_into(
        &mut self,
        i: usize,
        snap: &crate::engine::KvSnap,
        tokens: Vec<u32>,
    ) -> Result<usize, EngineError> {
        self.slots[i].tokens.clear();
        let r = self.engine.restore(i, snap, &tokens)?;
        self.slots[i].tokens = tokens;
        Ok(r)
    }

    /// Prefill `job` into slot `i` and sample its first token.
    fn start(&mut self, i: usize, job: Job) {
        let t0 = Instant::now();
        let shared = Arc::clone(&self.shared);
        let m = &shared.metrics;
        m.requests_started.fetch_add(1, Ordering::Relaxed);
        let mut sampler = match Sampler::new(job.params.sampler) {
            Ok(s) => s,
            Err(e) => {
                let _ = job
                    .tx
                    .send(Event::Error(ApiError::invalid(e.to_string(), None)));
                return;
            }
        };
        let prompt = job.prompt.clone();
        let result = self
            .reuse_prefix(i, &prompt)
            .and_then(|(kept, recomputed)| {
                let logits = self.engine.prefill(i, &prompt[kept..])?;
                Ok((kept, recomputed, sampler.sample_after(&prompt, logits)))
            });
        let now = self.tick();
        self.slots[i].last_used = now;
        let (kept, recomputed, first) = match result {
            Ok((k, r, Ok(t))) => (k, r, t),
            Ok((_, _, Err(e))) => {
                self.fail_slot(i, ApiError::internal(format!("sampling: {e}")), job);
                return;
            }
            Err(e) => {
                self.fail_slot(i, ApiError::internal(format!("the model failed: {e}")), job);
                return;
            }
        };
        let cache_n = kept - recomputed.min(kept);
        let prompt_n = prompt.len() - cache_n;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        m.prompt_tokens
            .fetch_add(prompt_n as u64, Ordering::Relaxed);
        m.prompt_tokens_cached
            .fetch_add(cache_n as u64, Ordering::Relaxed);
        m.prefill_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let seq = Seq {
            job,
            sampler,
            next: 0,
            generated: 0,
            utf8: Utf8Stream::new(),
            pending: String::new(),
            timings: Timings {
                cache_n,
                prompt_n,
                prompt_ms,
                prompt_per_second: rate(prompt_n, prompt_ms),
                ..Default::default()
            },
            t_decode: Instant::now(),
        };
        self.slots[i].tokens = prompt;
        self.slots[i].seq = Some(seq);
        self.accept_token(i, first);
    }

    fn fail_slot(&mut self, i: usize, err: ApiError, job: Job) {
        self.engine.truncate_seq(i, 0);
        self.slots[i].tokens.clear();
        self.slots[i].seq = None;
        self.shared.metrics.errors.fetch_add(1, Ordering::Relaxed);
        let _ = job.tx.send(Event::Error(err));
    }

    /// One decode step for every active sequence.
    fn decode_step(&mut self) {
        let batch: Vec<(usize, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.seq.as_ref().map(|q| (i, q.next)))
            .collect();
        if batch.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let shared = Arc::clone(&self.shared);
        let vocab = self.engine.vocab();
        let rows: Result<Vec<u32>, String> = match self.engine.decode(&batch) {
            Ok(logits) => {
                let mut out = Vec::with_capacity(batch.len());
                let mut err = None;
                for (r, &(i, _)) in batch.iter().enumerate() {
                    let Some(row) = logits.get(r * vocab..(r + 1) * vocab) else {
                        err = Some(format!(
                            "the engine returned {} logits for {} rows",
                            logits.len(),
                            batch.len()
                        ));
                        break;
                    };
                    let Some(seq) = self.slots[i].seq.as_mut() else {
                        continue;
                    };
                    match seq.sampler.sample(row) {
                        Ok(t) => out.push(t),
                        Err(e) => {
                            err = Some(format!("sampling: {e}"));
                            break;
                        }
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            }
            Err(e) => Err(format!("the model failed: {e}")),
        };
        let m = &shared.metrics;
        m.decode_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        m.decode_steps.fetch_add(1, Ordering::Relaxed);
        match rows {
            Ok(toks) => {
                for (&(i, fed), tok) in batch.iter().zip(toks) {
                    self.slots[i].tokens.push(fed);
                    self.accept_token(i, tok);
                }
            }
            Err(msg) => {
                for &(i, _) in &batch {
                    if let Some(seq) = self.slots[i].seq.take() {
                        self.fail_slot(i, ApiError::internal(msg.clone()), seq.job);
                    }
                }
            }
        }
    }

    /// A token sampled for slot `i`'s sequence: emit it, or finish.
    fn accept_token(&mut self, i: usize, tok: u32) {
        let info = Arc::clone(&self.info);
        let Some(seq) = self.slots[i].seq.as_mut() else {
            return;
        };
        let eog = !seq.job.params.ignore_eos
            && (info.tokenizer.is_eog(tok) || info.extra_eog.contains(&tok));
        let mut reason = None;
        if eog {
            reason = Some("stop");
        } else {
            seq.generated += 1;
            self.shared
                .metrics
                .generated_tokens
                .fetch_add(1, Ordering::Relaxed);
            seq.sampler.accept(tok);
            let piece = info.tokenizer.token_to_piece(tok, false);
            let text = seq.utf8.push(&piece);
            seq.pending.push_str(&text);
            if seq.generated >= seq.job.max_tokens {
                let tail = seq.utf8.finish();
                seq.pending.push_str(&tail);
                reason = Some("length");
            }
            let (out, stopped) =
                take_safe(&mut seq.pending, &seq.job.params.stop, reason.is_some());
            if stopped {
                reason = Some("stop");
            }
            if !out.is_empty() {
                let _ = seq.job.tx.send(Event::Text(out));
            }
            seq.next = tok;
        }
        if let Some(r) = reason {
            self.finish(i, r);
        }
    }

    fn finish(&mut self, i: usize, reason: &'static str) {
        let Some(mut seq) = self.slots[i].seq.take() else {
            return;
        };
        // Whatever a stop string held back is part of the answer unless it stopped.
        if reason != "stop" || !seq.pending.is_empty() {
            let tail = seq.utf8.finish();
            seq.pending.push_str(&tail);
            let (out, _) = take_safe(&mut seq.pending, &seq.job.params.stop, true);
            if !out.is_empty() {
                let _ = seq.job.tx.send(Event::Text(out));
            }
        }
        let mut t = seq.timings;
        t.predicted_n = seq.generated;
        t.predicted_ms = seq.t_decode.elapsed().as_secs_f64() * 1e3;
        t.predicted_per_second = rate(seq.generated, t.predicted_ms);
        self.shared
            .metrics
            .requests_done
            .fetch_add(1, Ordering::Relaxed);
        let _ = seq.job.tx.send(Event::Done(Finish {
            reason,
            prompt_tokens: seq.job.prompt.len(),
            completion_tokens: seq.generated,
            timings: t,
        }));
        let now = self.tick();
        self.slots[i].last_used = now;
    }

    fn publish_gauges(&mut self) {
        let m = &self.shared.metrics;
        let active = self.slots.iter().filter(|s| s.seq.is_some()).count();
        let used = self.slots.iter().filter(|s| !s.tokens.is_empty()).count();
        let positions: usize = self.slots.iter().map(|s| s.tokens.len()).sum();
        m.active.store(active as u64, Ordering::Relaxed);
        m.kv_pages_in_use.store(
            (used * self.engine.kv_pages_per_slot()) as u64,
            Ordering::Relaxed,
        );
        m.kv_positions.store(positions as u64, Ordering::Relaxed);
        m.cache_entries
            .store(self.store.entries().len() as u64, Ordering::Relaxed);
        m.cache_bytes
            .store(self.store.bytes() as u64, Ordering::Relaxed);
        let (l, h) = self.engine.take_ppt();
        m.ppt_lookups.fetch_add(l, Ordering::Relaxed);
        m.ppt_hits.fetch_add(h, Ordering::Relaxed);
    }

    fn slots_json(&self) -> serde_json::Value {
        let ctx = self.engine.ctx();
        serde_json::Value::Array(
            self.slots
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({
                        "id": i,
                        "n_ctx": ctx,
                        "is_processing": s.seq.is_some(),
                        "n_cached": s.tokens.len(),
                        "n_decoded": s.seq.as_ref().map_or(0, |q| q.generated),
                        "prompt_cache": {
                            "entries": self.store.entries().len(),
                            "bytes": self.store.bytes(),
                            "budget": self.store.budget(),
                        },
                    })
                })
                .collect(),
        )
    }

    /// Every cached sequence: the store's entries plus each slot's sequence.
    fn all_entries(&mut self) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.store.entries().to_vec();
        for i in 0..self.slots.len() {
            let toks = &self.slots[i].tokens;
            if toks.is_empty()
                || out
                    .iter()
                    .any(|e| e.tokens.len() >= toks.len() && e.tokens[..toks.len()] == **toks)
            {
                continue;
            }
            match self.engine.snapshot(i, toks.len()) {
                Ok(snap) => {
                    let t = self.slots[i].tokens.clone();
                    out.retain(|e| !(e.tokens.len() < t.len() && t[..e.tokens.len()] == *e.tokens));
                    out.push(Entry {
                        tokens: t,
                        snap,
                        last_used: self.slots[i].last_used,
                    });
                }
                Err(e) => eprintln!("vtpu serve: cannot snapshot slot {i}: {e}"),
            }
        }
        out
    }

    fn cache_path(&self, filename: Option<&str>) -> Result<PathBuf, ApiError> {
        let Some(dir) = &self.cfg.cache_dir else {
            return Err(ApiError::invalid(
                "the server was started without --cache-dir",
                None,
            ));
        };
        let name = filename.unwrap_or(DEFAULT_CACHE_FILE);
        let ok = !name.is_empty()
            && name.len() <= 200
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if !ok {
            return Err(ApiError::invalid(
                format!(
                    "filename {name:?}: letters, digits, '-', '_', '.' only, not starting with '.'"
                ),
                Some("filename"),
            ));
        }
        let name = if name.ends_with(".phext") {
            name.to_string()
        } else {
            format!("{name}.phext")
        };
        Ok(dir.join(name))
    }

    fn save_cache(&mut self, filename: Option<&str>) -> Result<serde_json::Value, ApiError> {
        let path = self.cache_path(filename)?;
        let t0 = Instant::now();
        let entries = self.all_entries();
        let dtype = entries
            .first()
            .map_or(vtpu_phext::DType::F32, |e| e.snap.dtype);
        let refs: Vec<&Entry> = entries.iter().take(cache_file::MAX_ENTRIES).collect();
        cache_file::save(
            &path,
            self.engine.fingerprint(),
            dtype,
            self.engine.kv_pages_per_slot(),
            &refs,
            serde_json::json!({"model": self.info.id}),
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let n: usize = refs.iter().map(|e| e.tokens.len()).sum();
        let bytes: usize = refs.iter().map(|e| e.bytes()).sum();
        Ok(serde_json::json!({
            "filename": path.file_name().map(|f| f.to_string_lossy().into_owned()),
            "n_saved": n,
            "n_entries": refs.len(),
            "n_written": bytes,
            "timings": {"save_ms": t0.elapsed().as_secs_f64() * 1e3},
        }))
    }

    fn load_cache(&mut self, filename: Option<&str>) -> Result<serde_json::Value, ApiError> {
        let path = self.cache_path(filename)?;
        let t0 = Instant::now();
        let l = cache_file::load(
            &path,
            self.engine.fingerprint(),
            self.engine.kv_pages_per_slot(),
        )
        .map_err(|e| ApiError::invalid(e.to_string(), Some("filename")))?;
        let mut n = 0;
        let mut kept = 0;
        for mut e in l.entries {
            if e.tokens.len() > self.engine.ctx() {
                continue;
            }
            e.last_used = self.tick();
            let len = e.tokens.len();
            if self.store.insert(e) {
                n += len;
                kept += 1;
            }
        }
        Ok(serde_json::json!({
            "filename": path.file_name().map(|f| f.to_string_lossy().into_owned()),
            "n_restored": n,
            "n_entries": kept,
            "timings": {"restore_ms": t0.elapsed().as_secs_f64() * 1e3},
        }))
    }

    fn restore_at_start(&mut self) {
        let Some(dir) = self.cfg.cache_dir.clone() else {
            return;
        };
        if !dir.join(DEFAULT_CACHE_FILE).exists() {
            return;
        }
        match self.load_cache(None) {
            Ok(v) => eprintln!(
                "vtpu serve: prompt cache restored from {}: {} entries, {} tokens",
                dir.join(DEFAULT_CACHE_FILE).display(),
                v["n_entries"],
                v["n_restored"]
            ),
            Err(e) => eprintln!("vtpu serve: prompt cache not restored: {}", e.message),
        }
    }

    fn slot_action(
        &mut self,
        id: usize,
        action: SlotAction,
        filename: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        if id >= self.slots.len() {
            return Err(ApiError {
                status: 404,
                kind: "not_found_error",
                message: format!("slot {id} does not exist (0..{})", self.slots.len()),
                param: None,
                code: None,
            });
        }
        let mut v = match action {
            SlotAction::Save => self.save_cache(filename.as_deref())?,
            SlotAction::Restore => self.load_cache(filename.as_deref())?,
            SlotAction::Erase => {
                if self.slots[id].seq.is_some() {
                    return Err(ApiError::invalid(
                        format!("slot {id} is processing a request"),
                        None,
                    ));
                }
                let n = self.slots[id].tokens.len();
                self.engine.truncate_seq(id, 0);
                self.slots[id].tokens.clear();
                serde_json::json!({"n_erased": n})
            }
        };
        v["id_slot"] = serde_json::json!(id);
        Ok(v)
    }

    /// Ends in-flight requests (each gets its final chunk), refuses the queue, saves
    /// the prompt cache.
    fn shutdown(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].seq.is_some() {
                self.finish(i, "length");
            }
        }
        for j in self.queue.drain(..) {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = j.tx.send(Event::Error(ApiError::unavailable(
                "the server is shutting down",
            )));
        }
        if self.cfg.cache_dir.is_some() {
            match self.save_cache(None) {
                Ok(v) => eprintln!(
                    "vtpu serve: prompt cache saved: {} entries, {} tokens",
                    v["n_entries"], v["n_saved"]
                ),
                Err(e) => eprintln!("vtpu serve: prompt cache not saved: {}", e.message),
            }
        }
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 / (ms / 1e3)
    } else {
        0.0
    }
}

/// Takes from `pending` the text that can be sent: everything before the first stop
/// string (then `true`), else everything except a tail that could still become a stop
/// string (all of it when `flush`).
pub fn take_safe(pending: &mut String, stops: &[String], flush: bool) -> (String, bool) {
    if let Some(i) = stops.iter().filter_map(|s| pending.find(s.as_str())).min() {
        let out = pending[..i].to_string();
        pending.clear();
        return (out, true);
    }
    let mut hold = 0;
    if !flush {
        for s in stops {
            for k in (1..s.len()).rev() {
                if s.is_char_boundary(k) && pending.ends_with(&s[..k]) {
                    hold = hold.max(k);
                    break;
                }
            }
        }
    }
    // `pending` ends with a char-boundary prefix of a stop string, so the cut is on a
    // char boundary too.
    let cut = pending.len() - hold;
    let out = pending[..cut].to_string();
    pending.replace_range(..cut, "");
    (out, false)
}

/// Samples the first token after a prompt (its tokens feed the repeat penalty).
trait SampleAfter {
    fn sample_after(
        &mut self,
        prompt: &[u32],
        logits: &[f32],
    ) -> Result<u32, vtpu_llm::sampler::SamplerError>;
}

impl SampleAfter for Sampler {
    fn sample_after(
        &mut self,
        prompt: &[u32],
        logits: &[f32],
    ) -> Result<u32, vtpu_llm::sampler::SamplerError> {
        for &t in prompt {
            self.accept(t);
        }
        self.sample(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::take_safe;

    #[test]
    fn stop_strings_hold_back_only_possible_starts() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        let mut p = "hello E".to_string();
        assert_eq!(take_safe(&mut p, &stops, false), ("hello ".into(), false));
        assert_eq!(p, "E");
        p.push_str("ND tail");
        assert_eq!(take_safe(&mut p, &stops, false), ("".into(), true));
        let mut p = "a\n".to_string();
        assert_eq!(take_safe(&mut p, &stops, false), ("a".into(), false));
        assert_eq!(take_safe(&mut p, &stops, true), ("\n".into(), false));
        let mut p = "héé".to_string();
        let s = vec!["é!".to_string()];
        assert_eq!(take_safe(&mut p, &s, false), ("hé".into(), false));
        assert_eq!(p, "é");
    }
}
