//! The pages of one layer in phext space (coordinates: [`crate::layer_coords`]):
//! weights sliced per sentron and stored read-only in their dtype, the rope table, and
//! the writable run state (arguments, input, output, KV cache).
//!
//! Slicing happens once, here, at load time; at run time every weight is a zero-copy
//! view of its page. An attention part's slice of `wo` (the columns of its query heads)
//! and a sentron's slice of `w_down` (the columns of its F rows) are copied into their
//! own pages so that each is one contiguous `[out, in]` matrix.

use crate::config::LayerConfig;
use crate::layer_coords::{self as lc, TensorKind};
use crate::layer_program::{LayerPlan, PlanError};
use crate::weights::LayerWeights;
use half::{bf16, f16};
use vtpu_phext::{DType, PageInit, PageKind};

/// Sizes of the run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunCapacity {
    /// Largest T of one call (rows of the input and output pages).
    pub max_tokens: usize,
    /// Positions the KV cache (and the rope table) hold.
    pub kv_capacity: usize,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `v` stored as `dtype` (f32, f16 or bf16; rounding to nearest even).
pub fn encode(v: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        DType::BF16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => f32_bytes(v),
    }
}

/// `w` with its projection matrices rounded to `dtype` (f16 / bf16, nearest even) and
/// back, exactly: the weights a layer stored in `dtype` computes with, for comparing it
/// with the f64 reference. Norm scales and biases stay f32 (they are stored f32).
pub fn rounded_to(w: &LayerWeights, dtype: DType) -> LayerWeights {
    let r = |v: &Vec<f32>| -> Vec<f32> {
        v.iter()
            .map(|&x| match dtype {
                DType::F16 => f16::from_f32(x).to_f32(),
                DType::BF16 => bf16::from_f32(x).to_f32(),
                _ => x,
            })
            .collect()
    };
    LayerWeights {
        wq: r(&w.wq),
        wk: r(&w.wk),
        wv: r(&w.wv),
        wo: r(&w.wo),
        w_gate: r(&w.w_gate),
        w_up: r(&w.w_up),
        w_down: r(&w.w_down),
        ..w.clone()
    }
}

/// Columns `[c0, c1)` of the row-major `rows x cols` matrix `m`.
fn columns(m: &[f32], cols: usize, c0: usize, c1: usize) -> Vec<f32> {
    m.chunks_exact(cols)
        .flat_map(|row| row[c0..c1].iter().copied())
        .collect()
}

struct Pages {
    out: Vec<PageInit>,
}

impl Pages {
    fn weight(
        &mut self,
        coord: Result<vtpu_phext::Coord, vtpu_phext::CoordError>,
        dtype: DType,
        shape: [usize; 2],
        data: &[f32],
    ) -> Result<(), PlanError> {
        self.out.push(PageInit {
            coord: coord?,
            dtype,
            shape,
            bytes: Some(encode(data, dtype)),
            read_only: true,
            kind: PageKind::Owned,
        });
        Ok(())
    }

    fn state(&mut self, coord: vtpu_phext::Coord, dtype: DType, shape: [usize; 2]) {
        self.out.push(PageInit {
            coord,
            dtype,
            shape,
            bytes: None,
            read_only: false,
            kind: PageKind::Scratch,
        });
    }
}

/// The rope table `[capacity, Hd]`: row p = `cos | sin` of the `Hd / 2` angles
/// `p * theta^(-2i/Hd)`, computed in f64 and rounded once (the kernels' `rope_table`).
pub fn rope_table(cfg: &LayerConfig, capacity: usize) -> Vec<f32> {
    let hd = cfg.head_dim;
    let half = hd / 2;
    let mut t = vec![0.0; capacity * hd];
    for (p, row) in t.chunks_exact_mut(hd).enumerate() {
        let (cos, sin) = row.split_at_mut(half);
        vtpu_kernels::scalar::rope_table(cos, sin, hd, 0, p, cfg.rope_theta);
    }
    t
}

/// Every page of the layer for `plan`: weights in `dtype` (norm scales, biases and the
/// rope table stay f32), plus the run state sized by `cap`.
pub fn layer_pages(
    plan: &LayerPlan,
    w: &LayerWeights,
    dtype: DType,
    cap: RunCapacity,
) -> Result<Vec<PageInit>, PlanError> {
    let cfg = &plan.cfg;
    let (l, d, hd, f) = (plan.layer, cfg.dim, cfg.head_dim, cfg.ffn_dim);
    let qd = cfg.q_dim();
    let mut p = Pages { out: Vec::new() };
    let f32t = DType::F32;
    p.weight(
        lc::weight(l, TensorKind::AttnNorm, 0),
        f32t,
        [1, d],
        &w.attn_norm,
    )?;
    p.weight(
        lc::weight(l, TensorKind::FfnNorm, 0),
        f32t,
        [1, d],
        &w.ffn_norm,
    )?;
    if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
        p.weight(lc::weight(l, TensorKind::QNorm, 0), f32t, [1, hd], qn)?;
        p.weight(lc::weight(l, TensorKind::KNorm, 0), f32t, [1, hd], kn)?;
    }
    for j in 0..cfg.n_kv_heads {
        let (k0, k1) = (j * hd, (j + 1) * hd);
        p.weight(
            lc::weight(l, TensorKind::Wk, j),
            dtype,
            [hd, d],
            &w.wk[k0 * d..k1 * d],
        )?;
        p.weight(
            lc::weight(l, TensorKind::Wv, j),
            dtype,
            [hd, d],
            &w.wv[k0 * d..k1 * d],
        )?;
        if let (Some(bk), Some(bv)) = (&w.bk, &w.bv) {
            p.weight(lc::weight(l, TensorKind::Bk, j), f32t, [1, hd], &bk[k0..k1])?;
            p.weight(lc::weight(l, TensorKind::Bv, j), f32t, [1, hd], &bv[k0..k1])?;
        }
    }
    for part in plan.parts() {
        let i = part.index;
        let (q0, q1) = (part.heads.start * hd, part.heads.end * hd);
        let n = q1 - q0;
        p.weight(
            lc::weight(l, TensorKind::Wq, i),
            dtype,
            [n, d],
            &w.wq[q0 * d..q1 * d],
        )?;
        if let Some(bq) = &w.bq {
            p.weight(lc::weight(l, TensorKind::Bq, i), f32t, [1, n], &bq[q0..q1])?;
        }
        p.weight(
            lc::weight(l, TensorKind::Wo, i),
            dtype,
            [d, n],
            &columns(&w.wo, qd, q0, q1),
        )?;
        for value in [false, true] {
            p.state(lc::kv_cache(l, i, value)?, f32t, [cap.kv_capacity, hd]);
        }
    }
    for (i, rows) in plan.ffn_rows.iter().enumerate() {
        let n = rows.len();
        let (r0, r1) = (rows.start * d, rows.end * d);
        p.weight(
            lc::weight(l, TensorKind::WGate, i),
            dtype,
            [n, d],
            &w.w_gate[r0..r1],
        )?;
        p.weight(
            lc::weight(l, TensorKind::WUp, i),
            dtype,
            [n, d],
            &w.w_up[r0..r1],
        )?;
        p.weight(
            lc::weight(l, TensorKind::WDown, i),
            dtype,
            [d, n],
            &columns(&w.w_down, f, rows.start, rows.end),
        )?;
    }
    p.weight(
        lc::weight(l, TensorKind::RopeTable, 0),
        f32t,
        [cap.kv_capacity, hd],
        &rope_table(cfg, cap.kv_capacity),
    )?;
    p.state(lc::args(), DType::I32, [1, 4]);
    p.state(lc::input(), f32t, [cap.max_tokens, d]);
    p.state(lc::output(), f32t, [cap.max_tokens, d]);
    Ok(p.out)
}
