//! What the scheduler needs from a model: several independent sequences ("slots"),
//! each with its own KV cache, prefilled one at a time and decoded together.
//!
//! [`Engine`] is that contract. [`ModelEngine`] implements it on
//! [`vtpu_llm::model::Model`] loaded with `--parallel` slots: each slot has KV rows of
//! its own, `decode` runs every active sequence in one `decode_batch` call, and a
//! snapshot / restore copies KV rows out of and into phext space, so a restore
//! computes nothing ([`Engine::restore`] returns 0 and [`Engine::can_restore`] is
//! true; the count stays in the contract for engines that would have to recompute,
//! so the `prompt_n` a response reports stays honest).
//!
//! Everything here runs on the engine thread, never in an async task: a model call
//! signals the pinned sentron threads and sleeps until they finish.

use vtpu_llm::model::{Model, ModelError};
use vtpu_phext::Coord;

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
/// page (in the model's page order), `pos` rows each. The model's own type, so a
/// snapshot goes in and out of the model without a copy.
pub type KvSnap = vtpu_llm::model::KvSnapshot;

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

/// `Engine` on a [`Model`] loaded with several slots (`ModelOptions::slots`): every
/// sequence has KV rows of its own, a decode step runs all of them in one batched
/// program, and a snapshot is copied in and out of phext space (no recomputation).
pub struct ModelEngine {
    model: Model,
    /// KV pages per slot (from a snapshot of nothing).
    pages: usize,
}

impl ModelEngine {
    /// Wraps a loaded model.
    pub fn new(model: Model) -> Result<ModelEngine, EngineError> {
        let pages = model.kv_snapshot(0, 0)?.pages.len();
        Ok(ModelEngine { model, pages })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    fn check_slot(&self, slot: usize) -> Result<(), EngineError> {
        let slots = self.model.slots();
        if slot >= slots {
            return Err(EngineError::NoSlot { slot, slots });
        }
        Ok(())
    }
}

impl Engine for ModelEngine {
    fn slots(&self) -> usize {
        self.model.slots()
    }
    fn ctx(&self) -> usize {
        self.model.capacity().ctx
    }
    fn vocab(&self) -> usize {
        self.model.cfg.vocab
    }
    fn seq_pos(&self, slot: usize) -> usize {
        self.model.seq_pos(slot)
    }
    fn truncate_seq(&mut self, slot: usize, pos: usize) {
        self.model.truncate_seq(slot, pos);
    }
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], EngineError> {
        self.check_slot(slot)?;
        Ok(self.model.forward_seq(slot, tokens)?)
    }
    fn decode(&mut self, batch: &[(usize, u32)]) -> Result<&[f32], EngineError> {
        Ok(self.model.decode_batch(batch)?)
    }
    fn snapshot(&mut self, slot: usize, n: usize) -> Result<KvSnap, EngineError> {
        self.check_slot(slot)?;
        let pos = self.model.seq_pos(slot);
        if n > pos {
            return Err(EngineError::SnapshotTooLong { slot, n, pos });
        }
        Ok(self.model.kv_snapshot(slot, n)?)
    }
    fn restore(
        &mut self,
        slot: usize,
        snap: &KvSnap,
        tokens: &[u32],
    ) -> Result<usize, EngineError> {
        self.check_slot(slot)?;
        check_snap(snap, self.fingerprint(), self.pages)?;
        if tokens.len() != snap.pos {
            return Err(EngineError::Mismatch(format!(
                "{} tokens for a snapshot of {} positions",
                tokens.len(),
                snap.pos
            )));
        }
        self.model.kv_restore(slot, snap)?;
        Ok(0)
    }
    fn can_restore(&self) -> bool {
        true
    }
    fn fingerprint(&self) -> u64 {
        self.model.fingerprint()
    }
    fn kv_pages_per_slot(&self) -> usize {
        self.pages
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
