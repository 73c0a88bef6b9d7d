//! Where a transformer layer lives in phext space: the coordinate scheme (also written
//! down in ARCHITECTURE.md, "Model weights and run state in phext space").
//!
//! A coordinate is `library.shelf.series/collection.volume.book/chapter.section.scroll`.
//!
//! **Weights** (library 1 = the model; read-only pages, gathered as zero-copy views):
//!
//! ```text
//! 1 . layer+1 . kind / part+1 . 1 . 1 / 1 . 1 . tile+1
//! ```
//!
//! - `kind` is a [`TensorKind`] (its number below);
//! - `part` is the slice of the tensor one sentron works on: the attention part (the
//!   query heads of one kv head that one sentron owns, numbered sentron by sentron) for
//!   `wq` rows, `bq` and the matching `wo` columns; the kv head for `wk`, `wv`, `bk`,
//!   `bv` (shared by the parts of that kv head); the sentron index for the SwiGLU
//!   tensors (`w_gate`/`w_up` rows and `w_down` columns of its slice of F); 0 for tensors
//!   every sentron shares (norm scales);
//! - `tile` numbers further pages of one part (always 0 today: a part is one page; a
//!   bigger tensor would continue at scroll 2, 3, ... and then carry into section, in base
//!   999, so no part of a coordinate ever exceeds 999).
//!
//! Model-wide tensors (the rope table, the token embedding, the final norm and the output
//! projection: kinds 15..=18; a phext image's metadata page is series 30) sit on shelf
//! [`MODEL_SHELF`], so a model has at most 998 layers.
//!
//! **Run state** (library 2; writable scratch pages, never saved):
//!
//! - `2.1.1/1.1.1/1.1.1` the argument page, i32 `[1, 4]`: `[T, start_pos, 0, 0]`;
//! - `2.1.2/1.1.1/1.1.1` the layer input `x`, f32 `[Tmax, D]`;
//! - `2.1.3/1.1.1/1.1.1` the layer output, f32 `[Tmax, D]`;
//! - `2.1.4/1.1.1/1.1.1` a model call's token ids, f32 `[Tmax, 1]`;
//! - `2.1.5/id+1.1.1/1.1.1` sentron `id`'s copy of the last layer's output `[Tmax, D]`;
//! - `2.1.6/1.1.1/1.1.1` the logits of the call's last token, f32 `[1, V]`;
//! - `2.layer+1.20/part+1.1.1/1.1.1` the key cache of attention part `part`, f32
//!   `[capacity, Hd]` (row p = the roped key of position p of its kv head); series 21 the
//!   value cache, same shape. A kv head split across two sentrons has a cache per part.

use vtpu_phext::{Coord, CoordError};

/// Library of the model's weights.
pub const MODEL_LIBRARY: u32 = 1;
/// Library of the run state (arguments, activations, KV cache).
pub const RUN_LIBRARY: u32 = 2;
/// Shelf of model-wide tensors.
pub const MODEL_SHELF: u32 = 999;
/// Largest layer index the scheme can place (shelf = layer + 1 < MODEL_SHELF).
pub const MAX_LAYER: usize = MODEL_SHELF as usize - 2;
/// Series of the key and value caches in the run library.
pub const SERIES_K_CACHE: u32 = 20;
pub const SERIES_V_CACHE: u32 = 21;

/// Every tensor kind of a decoder layer, with its series number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    AttnNorm = 1,
    Wq = 2,
    Wk = 3,
    Wv = 4,
    Bq = 5,
    Bk = 6,
    Bv = 7,
    QNorm = 8,
    KNorm = 9,
    Wo = 10,
    FfnNorm = 11,
    WGate = 12,
    WUp = 13,
    WDown = 14,
    /// Model-wide: `[capacity, Hd]`, row p = `cos | sin` of position p.
    RopeTable = 15,
    /// Model-wide: the token embedding table `[V, D]`.
    TokenEmbd = 16,
    /// Model-wide: the final RMSNorm scale `[1, D]`.
    OutputNorm = 17,
    /// Model-wide: the output projection `[V, D]` (absent when tied to `TokenEmbd`).
    Output = 18,
}

impl TensorKind {
    /// Tensors of the whole model (on [`MODEL_SHELF`]) rather than of one layer.
    pub fn is_model_wide(self) -> bool {
        matches!(
            self,
            TensorKind::RopeTable
                | TensorKind::TokenEmbd
                | TensorKind::OutputNorm
                | TensorKind::Output
        )
    }
}

fn coord(parts: [u32; 9]) -> Result<Coord, CoordError> {
    // Indices too large for a part (a layer past MAX_LAYER, more than 998 kv heads) are
    // an error here, never a wrapped or clamped coordinate.
    Coord::new(parts)
}

/// `layer + 1`, or a value no coordinate accepts when the layer would reach the model
/// shelf.
fn layer_shelf(layer: usize) -> u32 {
    if layer <= MAX_LAYER {
        layer as u32 + 1
    } else {
        u32::MAX
    }
}

fn part(index: usize) -> u32 {
    u32::try_from(index).map_or(u32::MAX, |i| i.saturating_add(1))
}

/// The page of one part of a layer tensor (tile 0).
pub fn weight(layer: usize, kind: TensorKind, index: usize) -> Result<Coord, CoordError> {
    let shelf = if kind.is_model_wide() {
        MODEL_SHELF
    } else {
        layer_shelf(layer)
    };
    coord([
        MODEL_LIBRARY,
        shelf,
        kind as u32,
        part(index),
        1,
        1,
        1,
        1,
        1,
    ])
}

/// The argument page (i32): `[T, start_pos, base, 0]` for a call of one sequence
/// (`base`: its first row in the KV cache pages), then `(pos, base)` of sequence `b` at
/// `4 + 2b` for a batched decode step.
pub fn args() -> Coord {
    Coord::new([RUN_LIBRARY, 1, 1, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// The layer input page (`[Tmax, D]`).
pub fn input() -> Coord {
    Coord::new([RUN_LIBRARY, 1, 2, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// The layer output page (`[Tmax, D]`).
pub fn output() -> Coord {
    Coord::new([RUN_LIBRARY, 1, 3, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// The token ids of a model call (f32 `[Tmax, 1]`: ids are exact in f32 below 2^24).
pub fn tokens() -> Coord {
    Coord::new([RUN_LIBRARY, 1, 4, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// Sentron `id`'s scratch page for the last layer's output `[Tmax, D]`, from which it
/// reads the last row back.
pub fn hidden(id: usize) -> Result<Coord, CoordError> {
    coord([RUN_LIBRARY, 1, 5, part(id), 1, 1, 1, 1, 1])
}

/// The logits of the last token (f32 `[1, V]`); sentrons write disjoint ranges.
pub fn logits() -> Coord {
    Coord::new([RUN_LIBRARY, 1, 6, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// Sentron `id`'s scratch page of a batched decode step: the `[B, w]` q, k and v tiles
/// of an attention part, from which each sequence's row is read back (f32
/// `[3 Bmax, H Hd]`).
pub fn batch_rows(id: usize) -> Result<Coord, CoordError> {
    coord([RUN_LIBRARY, 1, 7, part(id), 1, 1, 1, 1, 1])
}

/// Sentron `id`'s attention outputs of a batched decode step: `[B, its heads x Hd]` in
/// the first `B` rows of width `its heads x Hd` (the page is sized `[Bmax, H Hd]`), read
/// back for the all-gather.
pub fn batch_attn(id: usize) -> Result<Coord, CoordError> {
    coord([RUN_LIBRARY, 1, 8, part(id), 1, 1, 1, 1, 1])
}

/// The key (`value = false`) or value (`value = true`) cache of one attention part.
pub fn kv_cache(layer: usize, part_index: usize, value: bool) -> Result<Coord, CoordError> {
    let series = if value {
        SERIES_V_CACHE
    } else {
        SERIES_K_CACHE
    };
    coord([
        RUN_LIBRARY,
        layer_shelf(layer),
        series,
        part(part_index),
        1,
        1,
        1,
        1,
        1,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_what_the_docs_say() {
        let w = |l, k, i| weight(l, k, i).unwrap().to_string();
        assert_eq!(w(0, TensorKind::Wq, 2), "1.1.2/3.1.1/1.1.1");
        assert_eq!(w(5, TensorKind::RopeTable, 0), "1.999.15/1.1.1/1.1.1");
        assert_eq!(
            kv_cache(0, 1, true).unwrap().to_string(),
            "2.1.21/2.1.1/1.1.1"
        );
        assert!(weight(MAX_LAYER + 1, TensorKind::Wq, 0).is_err());
        assert!(kv_cache(0, 999, false).is_err());
        assert_eq!(args().to_string(), "2.1.1/1.1.1/1.1.1");
        assert_ne!(input(), output());
    }
}
