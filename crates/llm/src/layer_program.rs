//! The decoder layer as SIW programs: how the work is split across sentrons
//! ([`LayerPlan`]) and the stream each sentron runs ([`layer_program`]).
//!
//! One program serves prefill and decode: it reads `T` and `start_pos` from the argument
//! page (SLOAD), gathers `x [T, D]` with a register row count (SGATHERV), and every tile
//! op takes its shape from its operands, so the same words run any `T` at any position.
//!
//! Per sentron (letters as in [`crate::config`]; `G = H / KV` query heads per kv head).
//! A sentron owns a contiguous range of query heads; an *attention part* is the heads of
//! one kv head `j` it owns (`g <= G` of them):
//!
//! ```text
//! xn = rmsnorm(x, attn_norm)                                 [T, D]
//! for each attention part p = (kv head j, heads [a, b), g = b - a) of this sentron:
//!     q = xn . wq_p^T (+ bq_p)      [T, g*Hd]   (qk_norm: rmsnorm per Hd group)  rope
//!     k = xn . wk_j^T (+ bk_j)      [T, Hd]     (qk_norm)                         rope
//!     v = xn . wv_j^T (+ bv_j)      [T, Hd]
//!     K cache_p[start..start+T] = k;  V cache_p[...] = v          (SSCATTR)
//!     K = cache_p[0..S], V = ...    [S, Hd], S = start + T        (SWINDOW, no copy)
//!     p = softmax_causal(reshape(q, Hd) . K^T / sqrt(Hd))  [T*g, S]  (row t*g+h)
//!     o = reshape(p . V, g*Hd)      [T, g*Hd]
//!     attn += o . wo_p^T            [T, D]      (wo_p = the columns of heads [a, b))
//! attn = CREDUCE sum over sentrons;  h = x + attn
//! hn = rmsnorm(h, ffn_norm)
//! mlp = swiglu(hn . gate_i^T, hn . up_i^T) . down_i^T   [T, D]  (this sentron's F rows)
//! mlp = CREDUCE sum;  out = h + mlp   (sentron 0 scatters it to the output page)
//! ```
//!
//! Work split: each all-reduce is a barrier, so each of the two phases is balanced on
//! its own (balancing only the layer's total would make one sentron wait at the first
//! barrier and the other at the second). Phase 1: the H query heads are split evenly;
//! a kv head whose query heads land on two sentrons is computed, and cached, by both
//! (each owns the cache pages of its parts, so attention needs no communication).
//! Phase 2: the F rows are split evenly. Two all-reduces per layer, no other
//! synchronisation.

use crate::config::{LayerConfig, RopeLayout};
use crate::layer_coords::{self as lc, TensorKind};
use crate::program_builder::{Emit, EmitError, StreamBuilder, A};
use std::ops::Range;
use vtpu_compiler::{Arg, CompileOptions, Graph, SentronGraph, Value};
use vtpu_isa::{Opcode, PageDecl, Program};
use vtpu_phext::CoordError;

/// F rows are split in multiples of this (keeps the SIMD kernels on whole blocks).
pub const FFN_SPLIT_ALIGN: usize = 16;

/// The query heads of one kv head that one sentron owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttnPart {
    /// Index of the part in the layer (sentron by sentron): its weight pages and KV
    /// cache pages are numbered by it.
    pub index: usize,
    /// The kv head `j`.
    pub kv_head: usize,
    /// Query heads `[a, b)`, all of kv head `j`.
    pub heads: Range<usize>,
}

/// How one layer is laid out over `sentrons`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    pub cfg: LayerConfig,
    /// Layer index (its shelf is `layer + 1`).
    pub layer: usize,
    pub sentrons: usize,
    /// Attention parts of each sentron.
    pub attn: Vec<Vec<AttnPart>>,
    /// SwiGLU rows `[f0, f1)` of each sentron.
    pub ffn_rows: Vec<Range<usize>>,
    /// `Some`: the whole-row split. Each sentron computes these output rows of `wo` and
    /// `w_down`, each one dot product over the whole input row, after the attention
    /// outputs and the SwiGLU activations are all-gathered (CREDUCE cat, exact); the
    /// layer's arithmetic is then llama.cpp's whatever the
    /// sentron count. `None`: the column split (each sentron applies its own heads'
    /// columns of `wo` and its F columns of `w_down`; the partial products are summed,
    /// which changes the last bits; two all-reduces per layer instead of four).
    pub out_rows: Option<Vec<Range<usize>>>,
}

/// Why a plan or a program cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("layer plan: {sentrons} sentrons, but the machine has at most {max}")]
    Sentrons { sentrons: usize, max: usize },
    #[error("layer plan: ffn_dim {ffn} cannot give each of {sentrons} sentrons at least one row")]
    FfnTooSmall { ffn: usize, sentrons: usize },
    #[error("layer plan: coordinate out of range: {0}")]
    Coord(#[from] CoordError),
    #[error("layer program: {0}")]
    Emit(#[from] EmitError),
    #[error("layer plan: {0}")]
    Layout(&'static str),
}

/// `[i n / k, (i + 1) n / k)`, rounded to multiples of `align` when every part can get
/// at least one block.
fn even(n: usize, k: usize, i: usize, align: usize) -> Range<usize> {
    let cut = |i: usize| {
        let c = i * n / k;
        if n >= align * k && i < k {
            ((c + align / 2) / align * align).min(n)
        } else {
            c
        }
    };
    cut(i)..cut(i + 1)
}

impl LayerPlan {
    /// Split `cfg` (already validated) over `sentrons`.
    pub fn new(cfg: &LayerConfig, layer: usize, sentrons: usize) -> Result<LayerPlan, PlanError> {
        LayerPlan::with_ffn_align(cfg, layer, sentrons, FFN_SPLIT_ALIGN)
    }

    /// Like [`LayerPlan::new`], with the F rows split in multiples of `ffn_align` (the
    /// block size of a quantized `w_down`, whose column slices must be whole blocks).
    pub fn with_ffn_align(
        cfg: &LayerConfig,
        layer: usize,
        sentrons: usize,
        ffn_align: usize,
    ) -> Result<LayerPlan, PlanError> {
        let max = vtpu_isa::MAX_SENTRONS;
        if sentrons == 0 || sentrons > max {
            return Err(PlanError::Sentrons { sentrons, max });
        }
        if cfg.ffn_dim < sentrons {
            return Err(PlanError::FfnTooSmall {
                ffn: cfg.ffn_dim,
                sentrons,
            });
        }
        let g = cfg.group_size();
        let mut attn = Vec::with_capacity(sentrons);
        let mut index = 0;
        for i in 0..sentrons {
            let heads = even(cfg.n_heads, sentrons, i, 1);
            let mut parts = Vec::new();
            let mut a = heads.start;
            while a < heads.end {
                let j = a / g;
                let b = heads.end.min((j + 1) * g);
                parts.push(AttnPart {
                    index,
                    kv_head: j,
                    heads: a..b,
                });
                index += 1;
                a = b;
            }
            attn.push(parts);
        }
        let ffn_rows = (0..sentrons)
            .map(|i| even(cfg.ffn_dim, sentrons, i, ffn_align.max(1)))
            .collect();
        Ok(LayerPlan {
            cfg: cfg.clone(),
            layer,
            sentrons,
            attn,
            ffn_rows,
            out_rows: None,
        })
    }

    /// The whole-row split (see [`LayerPlan::out_rows`]); it needs every sentron to own
    /// at least one query head, otherwise the plan stays as it is.
    ///
    /// The F rows are split again on [`FFN_SPLIT_ALIGN`]: the alignment the column split
    /// may need (`w_down`'s columns cut on its blocks, 256 elements for the k-quants) no
    /// longer applies, since no sentron takes `w_down` by columns. With it Qwen2.5's F =
    /// 4864 = 19 x 256 split 2560 / 2304, and sentron 0 computed 11% more of every
    /// `w_gate` / `w_up` while sentron 1 waited at the all-gather.
    pub fn whole_rows(mut self) -> LayerPlan {
        if self.attn.iter().all(|p| !p.is_empty()) {
            let d = self.cfg.dim;
            let f = self.cfg.ffn_dim;
            self.ffn_rows = (0..self.sentrons)
                .map(|i| even(f, self.sentrons, i, FFN_SPLIT_ALIGN))
                .collect();
            self.out_rows = Some(
                (0..self.sentrons)
                    .map(|i| even(d, self.sentrons, i, FFN_SPLIT_ALIGN))
                    .collect(),
            );
        }
        self
    }

    /// Every attention part, in index order.
    pub fn parts(&self) -> impl Iterator<Item = &AttnPart> {
        self.attn.iter().flatten()
    }
}

/// Which slice of a tensor a sentron asks for.
#[derive(Clone, Copy, Debug)]
pub enum Slice<'a> {
    /// The whole tensor (norm scales, the rope table).
    Whole,
    /// The rows (`wq`, `bq`) or columns (`wo`) of one attention part's query heads.
    Part(&'a AttnPart),
    /// The rows of one kv head (`wk`, `wv`, `bk`, `bv`).
    KvHead(usize),
    /// One sentron's SwiGLU slice: `w_gate` / `w_up` rows, `w_down` columns.
    Ffn(usize, &'a Range<usize>),
    /// Output rows of `wo` / `w_down` (the whole-row split).
    Rows(&'a Range<usize>),
}

/// Where the generator finds one weight: a whole page, or `rows x cols` elements of a
/// read-only page from element `offset` (a zero-copy view, SGATHERV).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightRef {
    pub coord: vtpu_phext::Coord,
    pub rows: Option<(usize, usize, usize)>,
}

impl WeightRef {
    pub fn page(coord: vtpu_phext::Coord) -> WeightRef {
        WeightRef { coord, rows: None }
    }
}

/// How weights are laid out in phext space: the single-layer runner stores every
/// sentron's slice as a page of its own; a model maps whole tensors from the file and
/// names row ranges of them.
pub trait WeightMap {
    fn weight(
        &self,
        layer: usize,
        kind: TensorKind,
        slice: Slice<'_>,
    ) -> Result<WeightRef, PlanError>;
}

/// The single-layer layout (`layer_pages`): one page per part, kv head or sentron.
pub struct PerPartPages;

impl WeightMap for PerPartPages {
    fn weight(
        &self,
        layer: usize,
        kind: TensorKind,
        slice: Slice<'_>,
    ) -> Result<WeightRef, PlanError> {
        let index = match slice {
            Slice::Whole => 0,
            Slice::Part(p) => p.index,
            Slice::KvHead(j) => j,
            Slice::Ffn(i, _) => i,
            Slice::Rows(_) => {
                return Err(PlanError::Layout(
                    "the single-layer page layout has no whole-row split",
                ))
            }
        };
        Ok(WeightRef::page(lc::weight(layer, kind, index)?))
    }
}

/// Values every part's code shares.
struct Shared<V> {
    xn: V,
    rope: V,
    /// First element of this sequence's rows in the KV cache pages.
    win_off: V,
    start: V,
    kv_off: V,
    s_len: V,
}

/// Which packer turns the generated ops into words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Packer {
    /// The SIW compiler (`vtpu-compiler`): list scheduling, register allocation.
    #[default]
    Compiler,
    /// The small in-crate packer of `program_builder` (ASAP placement, FIFO registers).
    Builtin,
}

/// The program of one layer: one stream per sentron, no page declarations (the runner
/// builds the space; see `layer_pages`).
pub fn layer_program(plan: &LayerPlan, packer: Packer) -> Result<Program, PlanError> {
    match packer {
        Packer::Builtin => {
            let mut streams = Vec::with_capacity(plan.sentrons);
            for i in 0..plan.sentrons {
                let mut b = StreamBuilder::new(Some(i as u32));
                sentron_stream(&mut b, plan, i)?;
                streams.push(b.finish());
            }
            Ok(Program {
                pages: Vec::<PageDecl>::new(),
                streams,
            })
        }
        Packer::Compiler => {
            let mut g = Graph::new();
            for i in 0..plan.sentrons {
                let sg = g
                    .sentron(i as u32)
                    .map_err(|e| EmitError::Compiler(e.to_string()))?;
                sentron_stream(&mut GraphEmit(sg), plan, i)?;
            }
            // No inserted SPREFCH: a page prefetch runs on the sentron's own thread and
            // touches every line of a multi-megabyte weight page, so it costs about what
            // the read it would hide costs (measured: it doubled decode time).
            let opts = CompileOptions {
                prefetch: false,
                ..CompileOptions::packed()
            };
            let c = vtpu_compiler::compile(&g, &opts)
                .map_err(|e| EmitError::Compiler(e.to_string()))?;
            Ok(c.program)
        }
    }
}

/// The generator's ops into the SIW compiler's dataflow graph (values, no registers).
pub struct GraphEmit<'a>(pub &'a mut SentronGraph);

impl Emit for GraphEmit<'_> {
    type V = Value;

    fn op(&mut self, code: Opcode, args: &[A<Value>]) -> Result<Option<Value>, EmitError> {
        let args: Vec<Arg> = args
            .iter()
            .map(|a| match *a {
                A::V(v) => Arg::V(v),
                A::I64(v) => Arg::I64(v),
                A::F32(v) => Arg::F32(v),
                A::Coord(c) => Arg::Coord(c),
                A::Reduce(r) => Arg::Reduce(r),
                A::Group(g) => Arg::Group(g),
            })
            .collect();
        let out = self
            .0
            .op(code, &args)
            .map_err(|e| EmitError::Compiler(e.to_string()))?;
        Ok(out.first().copied())
    }

    fn release(&mut self, _: Value) {}

    fn halt(&mut self) -> Result<(), EmitError> {
        self.0
            .halt()
            .map(|_| ())
            .map_err(|e| EmitError::Compiler(e.to_string()))
    }
}

/// An op that writes a value (every op the generator uses for a result does).
fn val<E: Emit>(e: &mut E, code: Opcode, args: &[A<E::V>]) -> Result<E::V, PlanError> {
    e.op(code, args)?.ok_or_else(|| {
        PlanError::Emit(EmitError::Operands {
            op: code.name(),
            what: "writes no value".into(),
        })
    })
}

fn sentron_stream<E: Emit>(e: &mut E, plan: &LayerPlan, id: usize) -> Result<(), PlanError> {
    use Opcode as O;
    let d = plan.cfg.dim;
    // Arguments: T and start_pos.
    let zero = val(e, O::DLi, &[A::I64(0)])?;
    let one = val(e, O::DLi, &[A::I64(1)])?;
    let c_args = val(e, O::SCli, &[A::Coord(lc::args())])?;
    let t = val(e, O::SLoad, &[A::V(c_args), A::V(zero)])?;
    let start = val(e, O::SLoad, &[A::V(c_args), A::V(one)])?;
    e.release(c_args);
    e.release(one);

    // x [T, D].
    let c_x = val(e, O::SCli, &[A::Coord(lc::input())])?;
    let x = val(
        e,
        O::SGatherV,
        &[A::V(c_x), A::V(zero), A::V(t), A::I64(d as i64)],
    )?;
    e.release(c_x);
    let args = LayerArgs {
        t,
        start,
        base: zero,
    };
    let out = layer_body(e, plan, &PerPartPages, id, &args, x, id == 0)?;
    if let Some(out) = out {
        let c_out = val(e, O::SCli, &[A::Coord(lc::output())])?;
        e.op(O::SScatter, &[A::V(out), A::V(c_out), A::V(zero)])?;
    }
    e.halt()?;
    Ok(())
}

/// Scalar values a layer's code reads: T, start_pos and the sequence's first row in the
/// KV cache pages.
pub struct LayerArgs<V> {
    pub t: V,
    pub start: V,
    pub base: V,
}

/// A batched decode step: the constant 0 and the number of sequences (one token
/// each); sequence `b`'s position and first KV row are read from the argument page
/// (`4 + 2b`, `5 + 2b`) where they are used, so a large batch does not hold 2 registers
/// per sequence through the whole program.
pub struct BatchArgs<V> {
    pub zero: V,
    pub b: usize,
    /// Rows of the batch scratch pages (the largest batch of the model).
    pub max_batch: usize,
}

/// One decoder layer on sentron `id`: `x [T, D]` in, and the layer output `[T, D]` out
/// when `want_out` (every sentron holds the same value after the last all-reduce; a
/// sentron that does not use it must not compute it, or it would be a dead op).
/// Consumes `x`.
pub fn layer_body<E: Emit, W: WeightMap>(
    e: &mut E,
    plan: &LayerPlan,
    map: &W,
    id: usize,
    args: &LayerArgs<E::V>,
    x: E::V,
    want_out: bool,
) -> Result<Option<E::V>, PlanError> {
    let cfg = &plan.cfg;
    let (layer, hd) = (plan.layer, cfg.head_dim);
    use Opcode as O;
    let (t, start) = (args.t, args.start);

    let w = gather_weight(e, map.weight(layer, TensorKind::AttnNorm, Slice::Whole)?)?;
    let xn = val(e, O::DTRmsNorm, &[A::V(x), A::V(w), A::F32(cfg.rms_eps)])?;
    e.release(w);

    let mut parts = plan.attn[id].iter();
    let attn = match parts.next() {
        // No kv head here: this sentron adds a zero partial to the all-reduce.
        None => val(e, O::DTScale, &[A::V(x), A::F32(0.0)])?,
        Some(first) => {
            let rope = gather_weight(e, map.weight(layer, TensorKind::RopeTable, Slice::Whole)?)?;
            let row = val(e, O::DAdd, &[A::V(args.base), A::V(start)])?;
            let kv_off = val(e, O::DMuli, &[A::V(row), A::I64(hd as i64)])?;
            e.release(row);
            let win_off = val(e, O::DMuli, &[A::V(args.base), A::I64(hd as i64)])?;
            let s_len = val(e, O::DAdd, &[A::V(start), A::V(t)])?;
            let sh = Shared {
                xn,
                rope,
                win_off,
                start,
                kv_off,
                s_len,
            };
            let acc = match &plan.out_rows {
                None => {
                    let mut acc = attention_part(e, plan, map, &sh, first)?;
                    for p in parts {
                        let part = attention_part(e, plan, map, &sh, p)?;
                        acc = add(e, acc, part)?;
                    }
                    acc
                }
                Some(out_rows) => {
                    // This sentron's heads side by side ([T, its heads x Hd]; the heads
                    // of a sentron are consecutive, and the sentrons' in order), all-
                    // gathered into [T, H Hd], then this sentron's output rows of wo
                    // over the whole row, all-gathered into [T, D].
                    let h0 = first.heads.start;
                    let own = plan.attn[id].iter().map(|p| p.heads.len()).sum::<usize>() * hd;
                    let mut acc = None;
                    for p in std::iter::once(first).chain(parts) {
                        let o = attention_out(e, plan, map, &sh, p)?;
                        let o = place(e, o, (p.heads.start - h0) * hd, p.heads.len() * hd, own)?;
                        acc = Some(match acc {
                            None => o,
                            Some(a) => add(e, a, o)?,
                        });
                    }
                    let o = acc.ok_or(PlanError::Layout("a sentron without query heads"))?;
                    let o = all_gather(e, plan, o)?;
                    let r = &out_rows[id];
                    let y = project(e, o, map.weight(layer, TensorKind::Wo, Slice::Rows(r))?)?;
                    e.release(o);
                    all_gather(e, plan, y)?
                }
            };
            e.release(rope);
            e.release(kv_off);
            e.release(win_off);
            e.release(s_len);
            acc
        }
    };
    e.release(xn);
    // The whole-row split gathered its output above; the column split sums partials.
    let attn = match plan.out_rows {
        Some(_) => attn,
        None => all_reduce(e, plan, attn)?,
    };
    let h = val(e, O::DTAdd, &[A::V(x), A::V(attn)])?;
    e.release(x);
    e.release(attn);

    let mlp = ffn(e, plan, map, id, h)?;
    if !want_out {
        e.release(h);
        e.release(mlp);
        return Ok(None);
    }
    let out = val(e, O::DTAdd, &[A::V(h), A::V(mlp)])?;
    e.release(h);
    e.release(mlp);
    Ok(Some(out))
}

/// The SwiGLU MLP of `h` (not consumed): RMSNorm, this sentron's F rows of gate and up,
/// and the down projection, all-reduced: `[T, D]` on every sentron.
fn ffn<E: Emit, W: WeightMap>(
    e: &mut E,
    plan: &LayerPlan,
    map: &W,
    id: usize,
    h: E::V,
) -> Result<E::V, PlanError> {
    use Opcode as O;
    let cfg = &plan.cfg;
    let layer = plan.layer;
    let w = gather_weight(e, map.weight(layer, TensorKind::FfnNorm, Slice::Whole)?)?;
    let hn = val(e, O::DTRmsNorm, &[A::V(h), A::V(w), A::F32(cfg.rms_eps)])?;
    e.release(w);
    let rows = &plan.ffn_rows[id];
    let gate = project(
        e,
        hn,
        map.weight(layer, TensorKind::WGate, Slice::Ffn(id, rows))?,
    )?;
    let up = project(
        e,
        hn,
        map.weight(layer, TensorKind::WUp, Slice::Ffn(id, rows))?,
    )?;
    e.release(hn);
    let act = val(e, O::DTSwiglu, &[A::V(gate), A::V(up)])?;
    e.release(gate);
    e.release(up);
    let mlp = match &plan.out_rows {
        None => {
            let mlp = project(
                e,
                act,
                map.weight(layer, TensorKind::WDown, Slice::Ffn(id, rows))?,
            )?;
            e.release(act);
            all_reduce(e, plan, mlp)?
        }
        Some(out_rows) => {
            // The activations all-gathered, then this sentron's output rows of w_down
            // over the whole F row, all-gathered.
            let act = all_gather(e, plan, act)?;
            let r = &out_rows[id];
            let y = project(
                e,
                act,
                map.weight(layer, TensorKind::WDown, Slice::Rows(r))?,
            )?;
            e.release(act);
            all_gather(e, plan, y)?
        }
    };
    Ok(mlp)
}

/// One decoder layer of a batched decode step on sentron `id`: `x [B, D]` holds one
/// token of each of the B sequences of `args` (each with its own position and KV rows),
/// and the layer output `[B, D]` comes back (on every sentron). The products run on all
/// B rows at once (each weight read once per step); RoPE, the cache append and the
/// attention run per sequence on its row, read back through the sentron's scratch page.
/// Needs the whole-row split. Consumes `x`.
pub fn layer_body_batch<E: Emit, W: WeightMap>(
    e: &mut E,
    plan: &LayerPlan,
    map: &W,
    id: usize,
    args: &BatchArgs<E::V>,
    x: E::V,
) -> Result<E::V, PlanError> {
    use Opcode as O;
    let cfg = &plan.cfg;
    let (layer, hd) = (plan.layer, cfg.head_dim);
    let out_rows = plan.out_rows.as_ref().ok_or(PlanError::Layout(
        "batched decoding needs the whole-row split",
    ))?;
    let (b, bmax) = (args.b, args.max_batch);
    let qd = cfg.n_heads * hd;
    let hd_i = A::I64(hd as i64);
    let opt = |on: bool, kind: TensorKind, slice: Slice<'_>| -> Result<_, PlanError> {
        Ok(if on {
            Some(map.weight(layer, kind, slice)?)
        } else {
            None
        })
    };
    let rope_code = match cfg.rope_layout {
        RopeLayout::Interleaved => O::DTRope,
        RopeLayout::HalfSplit => O::DTRopeH,
    };

    let w = gather_weight(e, map.weight(layer, TensorKind::AttnNorm, Slice::Whole)?)?;
    let xn = val(e, O::DTRmsNorm, &[A::V(x), A::V(w), A::F32(cfg.rms_eps)])?;
    e.release(w);
    let rope = gather_weight(e, map.weight(layer, TensorKind::RopeTable, Slice::Whole)?)?;
    let c_rows = val(e, O::SCli, &[A::Coord(lc::batch_rows(id)?)])?;
    let c_o = val(e, O::SCli, &[A::Coord(lc::batch_attn(id)?)])?;
    // Offsets of the q, k and v tiles in the scratch page.
    let (k_at, v_at) = (bmax * qd, 2 * bmax * qd);
    // This sentron's query heads (consecutive) and their width in the attention rows.
    let h0 = plan.attn[id].first().map_or(0, |p| p.heads.start);
    let own = plan.attn[id].iter().map(|p| p.heads.len()).sum::<usize>() * hd;
    for part in &plan.attn[id] {
        let (g, j) = (part.heads.len(), part.index);
        let norm = |e: &mut E, y: E::V, n: Option<WeightRef>| -> Result<E::V, PlanError> {
            let Some(n) = n else { return Ok(y) };
            let w = gather_weight(e, n)?;
            let r = val(e, O::DTRmsNorm, &[A::V(y), A::V(w), A::F32(cfg.rms_eps)])?;
            e.release(w);
            e.release(y);
            Ok(r)
        };
        let q = project(e, xn, map.weight(layer, TensorKind::Wq, Slice::Part(part))?)?;
        let q = bias(e, q, opt(cfg.qkv_bias, TensorKind::Bq, Slice::Part(part))?)?;
        let q = norm(e, q, opt(cfg.qk_norm, TensorKind::QNorm, Slice::Whole)?)?;
        let kvh = Slice::KvHead(part.kv_head);
        let k = project(e, xn, map.weight(layer, TensorKind::Wk, kvh)?)?;
        let k = bias(e, k, opt(cfg.qkv_bias, TensorKind::Bk, kvh)?)?;
        let k = norm(e, k, opt(cfg.qk_norm, TensorKind::KNorm, Slice::Whole)?)?;
        let v = project(e, xn, map.weight(layer, TensorKind::Wv, kvh)?)?;
        let v = bias(e, v, opt(cfg.qkv_bias, TensorKind::Bv, kvh)?)?;
        for (tile, at) in [(q, 0), (k, k_at), (v, v_at)] {
            let off = val(e, O::DLi, &[A::I64(at as i64)])?;
            e.op(O::SScatter, &[A::V(tile), A::V(c_rows), A::V(off)])?;
            e.release(off);
            e.release(tile);
        }
        let ck = val(e, O::SCli, &[A::Coord(lc::kv_cache(layer, j, false)?)])?;
        let cv = val(e, O::SCli, &[A::Coord(lc::kv_cache(layer, j, true)?)])?;
        let one = val(e, O::DLi, &[A::I64(1)])?;
        let c_args = val(e, O::SCli, &[A::Coord(lc::args())])?;
        for bi in 0..b {
            let arg = |e: &mut E, i: usize| -> Result<E::V, PlanError> {
                let at = val(e, O::DLi, &[A::I64(i as i64)])?;
                let v = val(e, O::SLoad, &[A::V(c_args), A::V(at)])?;
                e.release(at);
                Ok(v)
            };
            let pos = arg(e, 4 + 2 * bi)?;
            let base = arg(e, 5 + 2 * bi)?;
            let row = |e: &mut E, at: usize, w: usize| -> Result<E::V, PlanError> {
                let off = val(e, O::DLi, &[A::I64(at as i64)])?;
                let r = val(
                    e,
                    O::SGatherV,
                    &[A::V(c_rows), A::V(off), A::V(one), A::I64(w as i64)],
                )?;
                e.release(off);
                Ok(r)
            };
            let qb = row(e, bi * g * hd, g * hd)?;
            let kb = row(e, k_at + bi * hd, hd)?;
            let vb = row(e, v_at + bi * hd, hd)?;
            let qb2 = val(e, rope_code, &[A::V(qb), A::V(rope), A::V(pos)])?;
            e.release(qb);
            let kb2 = val(e, rope_code, &[A::V(kb), A::V(rope), A::V(pos)])?;
            e.release(kb);
            let r0 = val(e, O::DAdd, &[A::V(base), A::V(pos)])?;
            let kv_off = val(e, O::DMuli, &[A::V(r0), hd_i])?;
            e.release(r0);
            e.op(O::SScatter, &[A::V(kb2), A::V(ck), A::V(kv_off)])?;
            e.op(O::SScatter, &[A::V(vb), A::V(cv), A::V(kv_off)])?;
            e.release(kv_off);
            e.release(kb2);
            e.release(vb);
            let win = val(e, O::DMuli, &[A::V(base), hd_i])?;
            let s_len = val(e, O::DAddi, &[A::V(pos), A::I64(1)])?;
            let keys = val(e, O::SWindow, &[A::V(ck), A::V(win), A::V(s_len), hd_i])?;
            let vals = val(e, O::SWindow, &[A::V(cv), A::V(win), A::V(s_len), hd_i])?;
            e.release(win);
            e.release(s_len);
            let qh = val(e, O::DTReshape, &[A::V(qb2), hd_i])?; // [g, Hd]
            e.release(qb2);
            let o = val(
                e,
                O::DTAttn,
                &[A::V(qh), A::V(keys), A::V(vals), A::I64(g as i64)],
            )?;
            e.release(qh);
            e.release(keys);
            e.release(vals);
            let o2 = val(e, O::DTReshape, &[A::V(o), A::I64((g * hd) as i64)])?;
            e.release(o);
            let at = val(
                e,
                O::DLi,
                &[A::I64((bi * own + (part.heads.start - h0) * hd) as i64)],
            )?;
            e.op(O::SScatter, &[A::V(o2), A::V(c_o), A::V(at)])?;
            e.release(at);
            e.release(o2);
            e.release(pos);
            e.release(base);
        }
        e.release(c_args);
        e.release(one);
        e.release(ck);
        e.release(cv);
    }
    e.release(rope);
    e.release(xn);
    e.release(c_rows);
    // This sentron's heads of every sequence ([B, its heads x Hd]), all-gathered into
    // [B, H Hd] (the sentrons' heads are consecutive and in order).
    let nb = val(e, O::DLi, &[A::I64(b as i64)])?;
    let o = val(
        e,
        O::SGatherV,
        &[A::V(c_o), A::V(args.zero), A::V(nb), A::I64(own as i64)],
    )?;
    e.release(nb);
    e.release(c_o);
    let o = all_gather(e, plan, o)?;
    let r = &out_rows[id];
    let y = project(e, o, map.weight(layer, TensorKind::Wo, Slice::Rows(r))?)?;
    e.release(o);
    let attn = all_gather(e, plan, y)?;
    let h = add(e, x, attn)?;
    let mlp = ffn(e, plan, map, id, h)?;
    add(e, h, mlp)
}

/// `a + b` (both consumed).
fn add<E: Emit>(e: &mut E, a: E::V, b: E::V) -> Result<E::V, PlanError> {
    let s = val(e, Opcode::DTAdd, &[A::V(a), A::V(b)])?;
    e.release(a);
    e.release(b);
    Ok(s)
}

/// `y` (`[T, cols]`) at column `at` of a `[T, width]` zero tile (consumed); `y` itself
/// when it already spans the width.
fn place<E: Emit>(
    e: &mut E,
    y: E::V,
    at: usize,
    cols: usize,
    width: usize,
) -> Result<E::V, PlanError> {
    if at == 0 && cols == width {
        return Ok(y);
    }
    let off = val(e, Opcode::DLi, &[A::I64(at as i64)])?;
    let p = val(
        e,
        Opcode::DTPlace,
        &[A::V(y), A::V(off), A::I64(width as i64)],
    )?;
    e.release(off);
    e.release(y);
    Ok(p)
}

/// CREDUCE cat over every sentron (nothing with one sentron): the sentrons' `[T, c_i]`
/// tiles side by side in sentron order, `[T, sum c_i]` on every sentron. Exact: no
/// arithmetic, unlike the sum of disjoint DTPLACE placements it replaces, which also
/// moved every zero.
fn all_gather<E: Emit>(e: &mut E, plan: &LayerPlan, v: E::V) -> Result<E::V, PlanError> {
    creduce(e, plan, v, vtpu_isa::word::REDUCE_CAT)
}

/// CREDUCE sum over every sentron (nothing with one sentron).
fn all_reduce<E: Emit>(e: &mut E, plan: &LayerPlan, v: E::V) -> Result<E::V, PlanError> {
    creduce(e, plan, v, vtpu_isa::word::REDUCE_SUM)
}

/// CREDUCE `op` over every sentron; `v` itself with one sentron.
fn creduce<E: Emit>(e: &mut E, plan: &LayerPlan, v: E::V, op: u8) -> Result<E::V, PlanError> {
    if plan.sentrons == 1 {
        return Ok(v);
    }
    let group = A::Group(vtpu_isa::word::GROUP_ALL);
    val(e, Opcode::CReduce, &[A::V(v), A::Reduce(op), group])
}

/// SCLI + SGATHER of a whole page.
fn gather_page<E: Emit>(e: &mut E, c: vtpu_phext::Coord) -> Result<E::V, PlanError> {
    let cr = val(e, Opcode::SCli, &[A::Coord(c)])?;
    let t = val(e, Opcode::SGather, &[A::V(cr)])?;
    e.release(cr);
    Ok(t)
}

/// A weight as a tile: the whole page, or a row range of it (SGATHERV, a zero-copy
/// view of a read-only page).
pub fn gather_weight<E: Emit>(e: &mut E, w: WeightRef) -> Result<E::V, PlanError> {
    let Some((offset, rows, cols)) = w.rows else {
        return gather_page(e, w.coord);
    };
    let cr = val(e, Opcode::SCli, &[A::Coord(w.coord)])?;
    let off = val(e, Opcode::DLi, &[A::I64(offset as i64)])?;
    let n = val(e, Opcode::DLi, &[A::I64(rows as i64)])?;
    let t = val(
        e,
        Opcode::SGatherV,
        &[A::V(cr), A::V(off), A::V(n), A::I64(cols as i64)],
    )?;
    e.release(cr);
    e.release(off);
    e.release(n);
    Ok(t)
}

/// `x . W^T` for the weight `w`.
pub fn project<E: Emit>(e: &mut E, x: E::V, w: WeightRef) -> Result<E::V, PlanError> {
    let w = gather_weight(e, w)?;
    let y = val(e, Opcode::DTMm, &[A::V(x), A::V(w)])?;
    e.release(w);
    Ok(y)
}

/// `y + bias` when the config has biases.
fn bias<E: Emit>(e: &mut E, y: E::V, c: Option<WeightRef>) -> Result<E::V, PlanError> {
    let Some(c) = c else { return Ok(y) };
    let b = gather_weight(e, c)?;
    let out = val(e, Opcode::DTAddR, &[A::V(y), A::V(b)])?;
    e.release(b);
    e.release(y);
    Ok(out)
}

/// Per-head RMSNorm (Qwen3) and RoPE of a `[T, n*Hd]` value.
fn norm_rope<E: Emit>(
    e: &mut E,
    plan: &LayerPlan,
    sh: &Shared<E::V>,
    y: E::V,
    norm: Option<WeightRef>,
) -> Result<E::V, PlanError> {
    let y = match norm {
        Some(c) => {
            let w = gather_weight(e, c)?;
            let n = val(
                e,
                Opcode::DTRmsNorm,
                &[A::V(y), A::V(w), A::F32(plan.cfg.rms_eps)],
            )?;
            e.release(w);
            e.release(y);
            n
        }
        None => y,
    };
    let code = match plan.cfg.rope_layout {
        RopeLayout::Interleaved => Opcode::DTRope,
        RopeLayout::HalfSplit => Opcode::DTRopeH,
    };
    let r = val(e, code, &[A::V(y), A::V(sh.rope), A::V(sh.start)])?;
    e.release(y);
    Ok(r)
}

/// The attention of one part: returns its `[T, D]` contribution `o . wo_p^T`.
fn attention_part<E: Emit, W: WeightMap>(
    e: &mut E,
    plan: &LayerPlan,
    map: &W,
    sh: &Shared<E::V>,
    part: &AttnPart,
) -> Result<E::V, PlanError> {
    let o2 = attention_out(e, plan, map, sh, part)?;
    let y = project(
        e,
        o2,
        map.weight(plan.layer, TensorKind::Wo, Slice::Part(part))?,
    )?;
    e.release(o2);
    Ok(y)
}

/// The attention output of one part's query heads, `[T, g Hd]`.
fn attention_out<E: Emit, W: WeightMap>(
    e: &mut E,
    plan: &LayerPlan,
    map: &W,
    sh: &Shared<E::V>,
    part: &AttnPart,
) -> Result<E::V, PlanError> {
    use Opcode as O;
    let cfg = &plan.cfg;
    let (layer, hd, g) = (plan.layer, cfg.head_dim, part.heads.len());
    let j = part.index;
    let opt = |on: bool, kind: TensorKind, slice: Slice<'_>| -> Result<_, PlanError> {
        Ok(if on {
            Some(map.weight(layer, kind, slice)?)
        } else {
            None
        })
    };
    let kvh = part.kv_head;
    let q = project(
        e,
        sh.xn,
        map.weight(layer, TensorKind::Wq, Slice::Part(part))?,
    )?;
    let q = bias(e, q, opt(cfg.qkv_bias, TensorKind::Bq, Slice::Part(part))?)?;
    let q = norm_rope(
        e,
        plan,
        sh,
        q,
        opt(cfg.qk_norm, TensorKind::QNorm, Slice::Whole)?,
    )?;
    let k = project(
        e,
        sh.xn,
        map.weight(layer, TensorKind::Wk, Slice::KvHead(kvh))?,
    )?;
    let k = bias(e, k, opt(cfg.qkv_bias, TensorKind::Bk, Slice::KvHead(kvh))?)?;
    let k = norm_rope(
        e,
        plan,
        sh,
        k,
        opt(cfg.qk_norm, TensorKind::KNorm, Slice::Whole)?,
    )?;
    let v = project(
        e,
        sh.xn,
        map.weight(layer, TensorKind::Wv, Slice::KvHead(kvh))?,
    )?;
    let v = bias(e, v, opt(cfg.qkv_bias, TensorKind::Bv, Slice::KvHead(kvh))?)?;

    // Append this step's keys and values, then read the whole visible cache back.
    let ck = val(e, O::SCli, &[A::Coord(lc::kv_cache(layer, j, false)?)])?;
    let cv = val(e, O::SCli, &[A::Coord(lc::kv_cache(layer, j, true)?)])?;
    e.op(O::SScatter, &[A::V(k), A::V(ck), A::V(sh.kv_off)])?;
    e.op(O::SScatter, &[A::V(v), A::V(cv), A::V(sh.kv_off)])?;
    e.release(k);
    e.release(v);
    let hd_i = A::I64(hd as i64);
    // Windows, not copies: DTMM / DTMMN read the cache pages in place.
    let keys = val(
        e,
        O::SWindow,
        &[A::V(ck), A::V(sh.win_off), A::V(sh.s_len), hd_i],
    )?;
    let vals = val(
        e,
        O::SWindow,
        &[A::V(cv), A::V(sh.win_off), A::V(sh.s_len), hd_i],
    )?;
    e.release(ck);
    e.release(cv);

    let qh = val(e, O::DTReshape, &[A::V(q), hd_i])?; // [T*g, Hd], row t*g + h
    e.release(q);
    // Scores, causal softmax and the value sum in one op, in llama.cpp's flash-attention
    // arithmetic (f16 accumulation over an f16 cache): see vtpu_kernels::attention.
    let o = val(
        e,
        O::DTAttn,
        &[A::V(qh), A::V(keys), A::V(vals), A::I64(g as i64)],
    )?; // [T*g, Hd]
    e.release(qh);
    e.release(keys);
    e.release(vals);
    let o2 = val(e, O::DTReshape, &[A::V(o), A::I64((g * hd) as i64)])?; // [T, g*Hd]
    e.release(o);
    Ok(o2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_head_and_row_and_programs_validate() {
        for cfg in [
            LayerConfig::smollm2_135m(),
            LayerConfig::qwen25_05b(),
            LayerConfig::qwen3_style(),
        ] {
            for n in 1..=4 {
                let p = LayerPlan::new(&cfg, 0, n).unwrap();
                let heads: Vec<usize> = p.parts().flat_map(|a| a.heads.clone()).collect();
                assert_eq!(heads, (0..cfg.n_heads).collect::<Vec<_>>());
                for (i, a) in p.parts().enumerate() {
                    assert_eq!(a.index, i);
                    assert!(a.heads.clone().all(|h| h / cfg.group_size() == a.kv_head));
                }
                assert_eq!(p.ffn_rows.last().unwrap().end, cfg.ffn_dim);
                for w in p.ffn_rows.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(!w[0].is_empty() && !w[1].is_empty());
                }
                for packer in [Packer::Builtin, Packer::Compiler] {
                    let prog = layer_program(&p, packer).unwrap();
                    vtpu_isa::validate(
                        &prog,
                        &vtpu_isa::ValidateOptions {
                            sentrons: Some(n),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    // Only sentron 0 writes the layer output: no other sentron may
                    // compute it (a dead op).
                    assert!(
                        vtpu_isa::dead::dead_ops(&prog).is_empty(),
                        "{packer:?} x{n}: {:?}",
                        vtpu_isa::dead::dead_ops(&prog)
                    );
                }
            }
        }
        // SmolLM2 on 2 sentrons: heads 0..4 and 4..9; kv head 1 (heads 3..6) is shared.
        let p = LayerPlan::new(&LayerConfig::smollm2_135m(), 0, 2).unwrap();
        let split: Vec<Vec<(usize, Range<usize>)>> = p
            .attn
            .iter()
            .map(|v| v.iter().map(|a| (a.kv_head, a.heads.clone())).collect())
            .collect();
        assert_eq!(
            split,
            vec![vec![(0, 0..3), (1, 3..4)], vec![(1, 4..6), (2, 6..9)]]
        );
        assert_eq!(p.ffn_rows, vec![0..768, 768..1536]);
    }

    #[test]
    fn the_whole_row_split_cuts_f_evenly_whatever_w_down_blocks_the_column_split_needs() {
        // Qwen2.5-0.5B: F = 4864 = 19 blocks of 256 (its k-quant `w_down`).
        let cfg = LayerConfig::qwen25_05b();
        let cols = LayerPlan::with_ffn_align(&cfg, 0, 2, 256).unwrap();
        assert_eq!(cols.ffn_rows, vec![0..2560, 2560..4864]);
        let rows = cols.whole_rows();
        assert!(rows.out_rows.is_some());
        assert_eq!(rows.ffn_rows, vec![0..2432, 2432..4864]);
        for n in [3, 4] {
            let p = LayerPlan::with_ffn_align(&cfg, 0, n, 256)
                .unwrap()
                .whole_rows();
            let lens: Vec<usize> = p.ffn_rows.iter().map(|r| r.len()).collect();
            let (lo, hi) = (*lens.iter().min().unwrap(), *lens.iter().max().unwrap());
            assert!(hi - lo <= FFN_SPLIT_ALIGN, "{n} sentrons: {lens:?}");
            assert!(p.ffn_rows.iter().all(|r| r.start % FFN_SPLIT_ALIGN == 0));
            assert_eq!(p.ffn_rows.last().unwrap().end, 4864);
        }
    }
}
