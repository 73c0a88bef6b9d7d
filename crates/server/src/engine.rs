//! What the scheduler needs from a model: several independent sequences ("slots"),
//! each with its own KV cache, prefilled one at a time and decoded together.
//!
//! [`Engine`] is that contract. [`ModelEngine`] implements it on
//! [`vtpu_llm::model::Model`]. Today's `Model` holds one sequence, so `ModelEngine`
//! offers one slot: requests take turns (the issue allows it until batched decoding
//! lands), a KV snapshot is read from the model's KV pages in phext space, and a
//! restore recomputes the snapshot's tokens (the model has no way to set its position
//! from outside); [`Engine::restore`] reports how many tokens it recomputed, so the
//! `prompt_n` a response reports stays honest. When `Model` gains the multi-sequence
//! API (`forward_seq`, `decode_batch`, `kv_snapshot`, `kv_restore`), only this file
//! changes.
//!
//! Everything here runs on the engine thread, never in an async task: a model call
//! signals the pinned sentron threads and sleeps until they finish.

use vtpu_llm::model::{Model, ModelError};
use vtpu_phext::{Coord, DType};
use xxhash_rust::xxh3::xxh3_64;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("slot {slot} does not exist (the engine has {slots})")]
    NoSlot { slot: usize, slots: usize },
    #[error("a KV snapshot of {n} positions was asked of slot {slot}, which holds {pos}")]
    SnapshotTooLong { slot: usize, n: usize, pos: usize },
    #[error("the KV snapshot does not fit this model: {0}")]
    Mismatch(String),
    #[error("KV page {coord}: {message}")]
    Page { coord: Coord, message: String },
}

/// The KV cache of the first `pos` positions of one sequence: one byte vector per KV
/// page (in the model's page order), `pos` rows each. The same shape as
/// `vtpu_llm::model::KvSnapshot` will have.
#[derive(Clone, Debug)]
pub struct KvSnap {
    pub pos: usize,
    pub dtype: DType,
    pub model_fingerprint: u64,
    pub pages: Vec<Vec<u8>>,
}

impl KvSnap {
    pub fn bytes(&self) -> usize {
        self.pages.iter().map(Vec::len).sum()
    }
}

/// Several independent sequences on one model.
pub trait Engine {
    /// Sequences held at once.
    fn slots(&self) -> usize;
    /// Positions each sequence can hold.
    fn ctx(&self) -> usize;
    fn vocab(&self) -> usize;
    /// Positions in slot `slot`'s cache.
    fn seq_pos(&self, slot: usize) -> usize;
    /// Keep the first `pos` positions of slot `slot`.
    fn truncate_seq(&mut self, slot: usize, pos: usize);
    /// Append `tokens` to slot `slot`; the logits `[V]` of the last one.
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], EngineError>;
    /// One token for each `(slot, token)`; `batch.len()` rows of `[V]` logits.
    fn decode(&mut self, batch: &[(usize, u32)]) -> Result<&[f32], EngineError>;
    /// The first `n` positions of slot `slot`.
    fn snapshot(&mut self, slot: usize, n: usize) -> Result<KvSnap, EngineError>;
    /// Make slot `slot` hold `snap` (whose positions are the KV of `tokens`). Returns how
    /// many of those positions had to be recomputed (0 for a true restore).
    fn restore(&mut self, slot: usize, snap: &KvSnap, tokens: &[u32])
        -> Result<usize, EngineError>;
    /// Whether [`Engine::restore`] copies KV (true) or has to recompute it (false): the
    /// scheduler copies prefixes between slots and the store only when it is cheap.
    fn can_restore(&self) -> bool;
    /// Identifies the model and KV layout a snapshot belongs to.
    fn fingerprint(&self) -> u64;
    /// KV pages one sequence uses.
    fn kv_pages_per_slot(&self) -> usize;
    /// PPT (translation cache) lookups and hits since the last call.
    fn take_ppt(&mut self) -> (u64, u64);
}

/// One KV page of the model: its coordinate and the bytes of one row.
#[derive(Clone, Debug)]
struct KvPage {
    coord: Coord,
    row_bytes: usize,
}

/// `Engine` on today's single-sequence [`Model`].
pub struct ModelEngine {
    model: Model,
    kv: Vec<KvPage>,
    kv_dtype: DType,
    fingerprint: u64,
    /// One row of logits per decoded sequence, `[batch, V]`.
    rows: Vec<f32>,
}

/// Library, series of the key and value cache pages (`crates/llm/src/layer_coords.rs`:
/// `2 . layer+1 . 20|21 / part+1 . 1 . 1 / 1 . 1 . 1`).
const RUN_LIBRARY: u32 = 2;
const SERIES_K: u32 = 20;
const SERIES_V: u32 = 21;

impl ModelEngine {
    /// Wraps a loaded model; finds its KV pages in phext space.
    pub fn new(model: Model) -> Result<ModelEngine, EngineError> {
        let space = model.space();
        let mut kv = Vec::new();
        let mut dtype = DType::F32;
        let mut shapes = String::new();
        // Coordinates come sorted (key order = coordinate order), so the page order of
        // a snapshot is the same on every load of the same model.
        for c in space.coords() {
            let p = c.parts();
            if p[0] != RUN_LIBRARY || !(p[2] == SERIES_K || p[2] == SERIES_V) {
                continue;
            }
            let Some(page) = space.get(c) else { continue };
            let [rows, _] = page.shape();
            if rows == 0 {
                continue;
            }
            dtype = page.dtype();
            kv.push(KvPage {
                coord: c,
                row_bytes: page.len_bytes() / rows,
            });
            shapes.push_str(&format!("{c}:{:?}:{};", page.shape(), page.dtype().name()));
        }
        if kv.is_empty() {
            return Err(EngineError::Mismatch(
                "the model has no KV cache pages in library 2".into(),
            ));
        }
        // What a snapshot depends on: the architecture, the weights' origin is not
        // known here, so the config (shapes, vocabulary, rope) and the KV page layout.
        let fingerprint = xxh3_64(format!("{:?}|{shapes}", model.cfg).as_bytes());
        let vocab = model.cfg.vocab;
        Ok(ModelEngine {
            model,
            kv,
            kv_dtype: dtype,
            fingerprint,
            rows: Vec::with_capacity(vocab),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    fn check_slot(&self, slot: usize) -> Result<(), EngineError> {
        if slot >= 1 {
            return Err(EngineError::NoSlot { slot, slots: 1 });
        }
        Ok(())
    }
}

impl Engine for ModelEngine {
    fn slots(&self) -> usize {
        1
    }
    fn ctx(&self) -> usize {
        self.model.capacity().ctx
    }
    fn vocab(&self) -> usize {
        self.model.cfg.vocab
    }
    fn seq_pos(&self, _slot: usize) -> usize {
        self.model.pos()
    }
    fn truncate_seq(&mut self, _slot: usize, pos: usize) {
        self.model.truncate(pos);
    }
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], EngineError> {
        self.check_slot(slot)?;
        Ok(self.model.forward(tokens)?)
    }
    fn decode(&mut self, batch: &[(usize, u32)]) -> Result<&[f32], EngineError> {
        self.rows.clear();
        for &(slot, tok) in batch {
            self.check_slot(slot)?;
            let logits = self.model.forward(&[tok])?;
            self.rows.extend_from_slice(logits);
        }
        Ok(&self.rows)
    }
    fn snapshot(&mut self, slot: usize, n: usize) -> Result<KvSnap, EngineError> {
        self.check_slot(slot)?;
        let pos = self.model.pos();
        if n > pos {
            return Err(EngineError::SnapshotTooLong { slot, n, pos });
        }
        let space = self.model.space();
        let mut pages = Vec::with_capacity(self.kv.len());
        for kp in &self.kv {
            let page = space.get(kp.coord).ok_or_else(|| EngineError::Page {
                coord: kp.coord,
                message: "missing".into(),
            })?;
            let len = n * kp.row_bytes;
            // Row p is position p: the first n rows are the first n positions.
            pages.push(
                page.read(|b| b.get(..len).map(<[u8]>::to_vec))
                    .ok_or_else(|| EngineError::Page {
                        coord: kp.coord,
                        message: format!("shorter than {n} rows"),
                    })?,
            );
        }
        Ok(KvSnap {
            pos: n,
            dtype: self.kv_dtype,
            model_fingerprint: self.fingerprint,
            pages,
        })
    }
    fn restore(
        &mut self,
        slot: usize,
        snap: &KvSnap,
        tokens: &[u32],
    ) -> Result<usize, EngineError> {
        self.check_slot(slot)?;
        check_snap(snap, self.fingerprint, self.kv.len())?;
        if tokens.len() != snap.pos {
            return Err(EngineError::Mismatch(format!(
                "{} tokens for a snapshot of {} positions",
                tokens.len(),
                snap.pos
            )));
        }
        // Today's Model cannot be told its position, so the positions are recomputed
        // (the same values the snapshot holds: the forward pass is deterministic).
        self.model.reset();
        if !tokens.is_empty() {
            self.model.forward(tokens)?;
        }
        Ok(tokens.len())
    }
    fn can_restore(&self) -> bool {
        false
    }
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn kv_pages_per_slot(&self) -> usize {
        self.kv.len()
    }
    fn take_ppt(&mut self) -> (u64, u64) {
        let st = self.model.take_stats();
        st.counters
            .iter()
            .fold((0, 0), |(l, h), c| (l + c.ppt_lookups, h + c.ppt_hits))
    }
}

/// Checks that a snapshot belongs to this model and layout.
pub fn check_snap(snap: &KvSnap, fingerprint: u64, pages: usize) -> Result<(), EngineError> {
    if snap.model_fingerprint != fingerprint {
        return Err(EngineError::Mismatch(format!(
            "model fingerprint {:016x}, this model's is {fingerprint:016x}",
            snap.model_fingerprint
        )));
    }
    if snap.pages.len() != pages {
        return Err(EngineError::Mismatch(format!(
            "{} KV pages, this model has {pages}",
            snap.pages.len()
        )));
    }
    Ok(())
}
