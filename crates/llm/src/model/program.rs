//! The whole model as one SIW program per sentron: embedding, every layer chained in
//! one stream (activations stay in tile registers between layers), final norm and the
//! logits of the last token, written to a page. Built once per model and capacity;
//! every call (prefill chunk or decode step) runs the same program with `T` and
//! `start_pos` read from the argument page.
//!
//! Per sentron `i` (letters as in [`crate::config`]):
//!
//! ```text
//! ids = tokens[0..T]                      [T, 1]   (SGATHERV of the token page)
//! x   = embed(token_embd, ids)            [T, D]   (DTEMBED: dequantizes the rows)
//! for layer in 0..L: x = layer(x)         [T, D]   (layer_body; 4 all-gathers each)
//! last = x[T-1]                           [1, D]   (SSCATTR to this sentron's page, SGATHERV of the row)
//! h = rmsnorm(last, output_norm)          [1, D]
//! for each chunk [v0, v1) of this sentron's vocabulary rows:
//!     logits[v0..v1] = h . W_out[v0..v1]^T        (W_out = output or token_embd)
//! ```

use super::load::LoadError;
use crate::layer_coords::{self as lc, TensorKind};
use crate::layer_program::{
    gather_weight, layer_body, layer_body_batch, BatchArgs, GraphEmit, LayerArgs, LayerPlan,
    Packer, PlanError, Slice, WeightMap, WeightRef,
};
use crate::program_builder::{Emit, EmitError, StreamBuilder, A};
use std::ops::Range;
use vtpu_compiler::{CompileOptions, Graph};
use vtpu_isa::{Opcode, PageDecl, Program};

/// Output rows one DTMM handles at most (a tile limit, and it keeps each view small).
pub const VOCAB_CHUNK: usize = 16384;

/// How a model is laid out: whole tensors mapped from the file, and row ranges of them
/// named per part (see `load.rs` for the copied `wo` / `w_down` column slices).
pub struct ModelMap {
    pub dim: usize,
    pub head_dim: usize,
    /// Row lengths of `wo` (H Hd) and `w_down` (F), for the whole-row split.
    pub q_dim: usize,
    pub ffn_dim: usize,
    /// The output projection's tensor kind (`Output`, or `TokenEmbd` when tied).
    pub output: TensorKind,
}

fn rows(coord: vtpu_phext::Coord, first: usize, n: usize, cols: usize) -> WeightRef {
    WeightRef {
        coord,
        rows: Some((first * cols, n, cols)),
    }
}

/// `n` consecutive elements of a one-row page from element `offset`, as `[1, n]`.
fn segment(coord: vtpu_phext::Coord, offset: usize, n: usize) -> WeightRef {
    WeightRef {
        coord,
        rows: Some((offset, 1, n)),
    }
}

impl WeightMap for ModelMap {
    fn weight(
        &self,
        layer: usize,
        kind: TensorKind,
        slice: Slice<'_>,
    ) -> Result<WeightRef, PlanError> {
        use TensorKind as K;
        let (d, hd) = (self.dim, self.head_dim);
        let c = |k: K, i: usize| lc::weight(layer, k, i);
        Ok(match (kind, slice) {
            (K::Wq, Slice::Part(p)) => {
                rows(c(K::Wq, 0)?, p.heads.start * hd, p.heads.len() * hd, d)
            }
            (K::Bq, Slice::Part(p)) => {
                segment(c(K::Bq, 0)?, p.heads.start * hd, p.heads.len() * hd)
            }
            (K::Wk | K::Wv, Slice::KvHead(j)) => rows(c(kind, 0)?, j * hd, hd, d),
            (K::Bk | K::Bv, Slice::KvHead(j)) => segment(c(kind, 0)?, j * hd, hd),
            (K::Wo, Slice::Part(p)) => WeightRef::page(c(K::Wo, p.index)?),
            (K::WGate | K::WUp, Slice::Ffn(_, r)) => rows(c(kind, 0)?, r.start, r.len(), d),
            (K::WDown, Slice::Ffn(i, _)) => WeightRef::page(c(K::WDown, i)?),
            (K::Wo, Slice::Rows(r)) => rows(c(K::Wo, 0)?, r.start, r.len(), self.q_dim),
            (K::WDown, Slice::Rows(r)) => rows(c(K::WDown, 0)?, r.start, r.len(), self.ffn_dim),
            (k, _) => WeightRef::page(c(k, 0)?),
        })
    }
}

/// The model's layout over sentrons: one plan per layer and each sentron's vocabulary
/// rows for the logits.
#[derive(Clone, Debug)]
pub struct ModelPlan {
    pub layers: Vec<LayerPlan>,
    pub vocab_rows: Vec<Range<usize>>,
    pub vocab: usize,
    pub dim: usize,
    pub rms_eps: f32,
    pub tied: bool,
}

impl ModelPlan {
    pub fn sentrons(&self) -> usize {
        self.vocab_rows.len()
    }
}

/// Split `v` rows evenly over `n` sentrons in multiples of 16 (when each gets one).
pub fn split_rows(v: usize, n: usize) -> Vec<Range<usize>> {
    let cut = |i: usize| {
        let c = i * v / n;
        if v >= 16 * n && i < n {
            ((c + 8) / 16 * 16).min(v)
        } else {
            c
        }
    };
    (0..n).map(|i| cut(i)..cut(i + 1)).collect()
}

/// The program of the whole model: one stream per sentron, no page declarations (the
/// model's pages are built by the loader).
pub fn model_program(plan: &ModelPlan, packer: Packer) -> Result<Program, LoadError> {
    program_for(plan, packer, None)
}

/// The program of one batched decode step of `b` sequences (one token each, positions
/// and KV rows from the argument page); `max_batch` sizes the scratch pages. The logits
/// page holds, for each vocabulary chunk `[v0, v1)` of [`vocab_chunks`], the `[b, v1 -
/// v0]` block at element `b v0`.
pub fn model_program_batch(
    plan: &ModelPlan,
    packer: Packer,
    b: usize,
    max_batch: usize,
) -> Result<Program, LoadError> {
    program_for(plan, packer, Some((b, max_batch)))
}

/// Every sentron's vocabulary rows in the chunks one DTMM computes, in order.
pub fn vocab_chunks(plan: &ModelPlan) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for r in &plan.vocab_rows {
        let mut v0 = r.start;
        while v0 < r.end {
            let v1 = (v0 + VOCAB_CHUNK).min(r.end);
            out.push(v0..v1);
            v0 = v1;
        }
    }
    out
}

fn program_for(
    plan: &ModelPlan,
    packer: Packer,
    batch: Option<(usize, usize)>,
) -> Result<Program, LoadError> {
    let n = plan.sentrons();
    let map = ModelMap {
        dim: plan.dim,
        head_dim: plan.layers.first().map_or(0, |l| l.cfg.head_dim),
        q_dim: plan.layers.first().map_or(0, |l| l.cfg.q_dim()),
        ffn_dim: plan.layers.first().map_or(0, |l| l.cfg.ffn_dim),
        output: if plan.tied {
            TensorKind::TokenEmbd
        } else {
            TensorKind::Output
        },
    };
    let program = match packer {
        Packer::Builtin => {
            let mut streams = Vec::with_capacity(n);
            for i in 0..n {
                let mut b = StreamBuilder::new(Some(i as u32));
                sentron_stream(&mut b, plan, &map, i, batch)?;
                streams.push(b.finish());
            }
            Program {
                pages: Vec::<PageDecl>::new(),
                streams,
            }
        }
        Packer::Compiler => {
            let mut g = Graph::new();
            for i in 0..n {
                let sg = g
                    .sentron(i as u32)
                    .map_err(|e| PlanError::Emit(EmitError::Compiler(e.to_string())))?;
                sentron_stream(&mut GraphEmit(sg), plan, &map, i, batch)?;
            }
            // No inserted SPREFCH (see layer_program: a page prefetch on the sentron's
            // own thread costs what the read it would hide costs).
            let opts = CompileOptions {
                prefetch: false,
                ..CompileOptions::packed()
            };
            vtpu_compiler::compile(&g, &opts)
                .map_err(|e| PlanError::Emit(EmitError::Compiler(e.to_string())))?
                .program
        }
    };
    Ok(program)
}

fn val<E: Emit>(e: &mut E, code: Opcode, args: &[A<E::V>]) -> Result<E::V, PlanError> {
    e.op(code, args)?.ok_or_else(|| {
        PlanError::Emit(EmitError::Operands {
            op: code.name(),
            what: "writes no value".into(),
        })
    })
}

fn sentron_stream<E: Emit>(
    e: &mut E,
    plan: &ModelPlan,
    map: &ModelMap,
    id: usize,
    batch: Option<(usize, usize)>,
) -> Result<(), PlanError> {
    use Opcode as O;
    let d = plan.dim;
    let zero = val(e, O::DLi, &[A::I64(0)])?;
    let one = val(e, O::DLi, &[A::I64(1)])?;
    let c_args = val(e, O::SCli, &[A::Coord(lc::args())])?;
    let load = |e: &mut E, i: usize| -> Result<E::V, PlanError> {
        let at = val(e, O::DLi, &[A::I64(i as i64)])?;
        let v = val(e, O::SLoad, &[A::V(c_args), A::V(at)])?;
        e.release(at);
        Ok(v)
    };
    // Rows of this call: T tokens of one sequence, or one token of each of b.
    let (t, seq) = match batch {
        None => {
            let t = val(e, O::SLoad, &[A::V(c_args), A::V(zero)])?;
            let start = val(e, O::SLoad, &[A::V(c_args), A::V(one)])?;
            let base = load(e, 2)?;
            (t, Some((start, base)))
        }
        Some((b, _)) => (val(e, O::DLi, &[A::I64(b as i64)])?, None),
    };
    e.release(c_args);

    // Embedding: ids [T, 1] -> x [T, D].
    let c_tok = val(e, O::SCli, &[A::Coord(lc::tokens())])?;
    let ids = val(
        e,
        O::SGatherV,
        &[A::V(c_tok), A::V(zero), A::V(t), A::I64(1)],
    )?;
    e.release(c_tok);
    let table = gather_weight(e, map.weight(0, TensorKind::TokenEmbd, Slice::Whole)?)?;
    let mut x = val(e, O::DTEmbed, &[A::V(ids), A::V(table)])?;
    e.release(ids);
    e.release(table);

    let last = match (seq, batch) {
        (Some((start, base)), _) => {
            let args = LayerArgs { t, start, base };
            for lp in &plan.layers {
                x = layer_body(e, lp, map, id, &args, x, true)?.ok_or_else(|| {
                    PlanError::Emit(EmitError::Operands {
                        op: "layer",
                        what: "returned no output".into(),
                    })
                })?;
            }
            e.release(start);
            e.release(base);
            // The last row, through this sentron's own scratch page.
            let c_h = val(e, O::SCli, &[A::Coord(lc::hidden(id)?)])?;
            e.op(O::SScatter, &[A::V(x), A::V(c_h), A::V(zero)])?;
            e.release(x);
            let tm1 = val(e, O::DAddi, &[A::V(t), A::I64(-1)])?;
            let off = val(e, O::DMuli, &[A::V(tm1), A::I64(d as i64)])?;
            e.release(tm1);
            let last = val(
                e,
                O::SGatherV,
                &[A::V(c_h), A::V(off), A::V(one), A::I64(d as i64)],
            )?;
            e.release(c_h);
            e.release(off);
            last
        }
        (None, Some((_, max_batch))) => {
            let args = BatchArgs {
                zero,
                b: batch.map_or(1, |(b, _)| b),
                max_batch,
            };
            for lp in &plan.layers {
                x = layer_body_batch(e, lp, map, id, &args, x)?;
            }
            // Every row is a sequence's last token.
            x
        }
        (None, None) => return Err(PlanError::Layout("a call with no sequence")),
    };
    e.release(t);
    let w = gather_weight(e, map.weight(0, TensorKind::OutputNorm, Slice::Whole)?)?;
    let h = val(
        e,
        O::DTRmsNorm,
        &[A::V(last), A::V(w), A::F32(plan.rms_eps)],
    )?;
    e.release(w);
    e.release(last);

    let out = lc::weight(0, map.output, 0)?;
    let c_logits = val(e, O::SCli, &[A::Coord(lc::logits())])?;
    let rows_per_call = batch.map_or(1, |(b, _)| b);
    let r = &plan.vocab_rows[id];
    let mut v0 = r.start;
    while v0 < r.end {
        let v1 = (v0 + VOCAB_CHUNK).min(r.end);
        let w = gather_weight(e, rows(out, v0, v1 - v0, d))?;
        let y = val(e, O::DTMm, &[A::V(h), A::V(w)])?;
        e.release(w);
        // One row: element v0 of the logits; b rows: the [b, v1 - v0] block at b v0.
        let at = val(e, O::DLi, &[A::I64((rows_per_call * v0) as i64)])?;
        e.op(O::SScatter, &[A::V(y), A::V(c_logits), A::V(at)])?;
        e.release(at);
        e.release(y);
        v0 = v1;
    }
    e.release(h);
    e.release(c_logits);
    e.release(one);
    e.release(zero);
    e.halt()?;
    Ok(())
}
