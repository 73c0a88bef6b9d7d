//! The living spec of one decoder layer: a plain f64 forward pass, written for
//! obviousness, not speed. Every fast path in vtpu is checked against it, and it is
//! itself checked against Hugging Face transformers (`tests/hf_goldens.rs`).
//!
//! One layer, for tokens at positions `start_pos .. start_pos + T`:
//!
//! ```text
//! x [T, D] -> RMSNorm(attn_norm) -> Q = wq.x (+bq) [T, H*Hd], K = wk.x (+bk), V = wv.x (+bv) [T, KV*Hd]
//!          -> (Qwen3) per-head RMSNorm of Q and K with q_norm / k_norm [Hd]
//!          -> RoPE on Q and K at their positions (layout from the config)
//!          -> append K, V to the cache
//!          -> causal GQA attention: head h reads kv head h / (H/KV), scores q.k / sqrt(Hd),
//!             softmax over cache positions <= the query's own position
//!          -> wo [D, H*Hd] -> + x (residual)            = h [T, D]
//!          -> RMSNorm(ffn_norm) -> w_down . (silu(w_gate . n) * (w_up . n)) -> + h = out [T, D]
//! ```
//!
//! Prefill is one call with T tokens; decode is a call with T = 1. Weights and inputs
//! are f32 (what the model files hold); every intermediate is f64, so the reference's
//! own rounding error is ~1e-16 relative and comparisons measure the other side.

use crate::config::{ConfigError, LayerConfig, RopeLayout};
use crate::weights::{LayerWeights, WeightsError};
use thiserror::Error;

/// Why a reference forward could not run. The cache is left untouched on error.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(
        "reference forward: input has {len} values, not a whole number T >= 1 of rows of D = {dim}"
    )]
    InputLength { len: usize, dim: usize },
    #[error("reference forward: positions {start_pos}..{end} exceed max_seq {max_seq}")]
    PositionOutOfRange {
        start_pos: usize,
        end: usize,
        max_seq: usize,
    },
    #[error("reference forward: start_pos {start_pos} but the KV cache holds {cache_len} positions; tokens must continue the cache")]
    NonContiguousPosition { start_pos: usize, cache_len: usize },
    #[error("reference forward: KV cache was built for {cache_kv_heads} kv heads x {cache_head_dim} head_dim x {cache_max_seq} positions, config says {kv_heads} x {head_dim} x {max_seq}")]
    CacheShapeMismatch {
        cache_kv_heads: usize,
        cache_head_dim: usize,
        cache_max_seq: usize,
        kv_heads: usize,
        head_dim: usize,
        max_seq: usize,
    },
}

/// How a [`KvCacheF64`] stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvStore {
    /// Exactly, in f64.
    #[default]
    Exact,
    /// Rounded as an f16 KV cache page holds them (`--kv-type f16`): to f32, as the vTPU
    /// computes them, then to the nearest f16, ties to even; attention over them is the
    /// f16 flash attention that llama.cpp (and so the vTPU) runs on an f16 cache: the
    /// query rounded to f16, the output accumulated in f16 (the specification,
    /// `vtpu_kernels::attention::attention_scalar`, on the f32-rounded query). So this
    /// reference isolates what an f16 cache changes.
    F16,
}

impl KvStore {
    fn store(self, x: f64) -> f64 {
        match self {
            KvStore::Exact => x,
            KvStore::F16 => half::f16::from_f32(x as f32).to_f64(),
        }
    }
}

/// KV cache of one layer in f64, after RoPE (keys) as the attention reads them.
/// Positions `0..len()` are filled, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCacheF64 {
    store: KvStore,
    n_kv_heads: usize,
    head_dim: usize,
    max_seq: usize,
    /// Per kv head: [S, Hd] keys, S = len().
    k: Vec<Vec<f64>>,
    /// Per kv head: [S, Hd] values.
    v: Vec<Vec<f64>>,
}

impl KvCacheF64 {
    /// An empty cache for `cfg`. Storage grows as positions are appended, so a config
    /// with a large `max_seq` costs nothing until it is used.
    pub fn new(cfg: &LayerConfig) -> Result<Self, ConfigError> {
        Self::with_store(cfg, KvStore::Exact)
    }

    /// An empty cache for `cfg` that stores keys and values as `store` says.
    pub fn with_store(cfg: &LayerConfig, store: KvStore) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            store,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            max_seq: cfg.max_seq,
            k: vec![Vec::new(); cfg.n_kv_heads],
            v: vec![Vec::new(); cfg.n_kv_heads],
        })
    }

    /// S: positions held.
    pub fn len(&self) -> usize {
        self.k.first().map_or(0, |k| k.len() / self.head_dim)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [S, Hd] keys of kv head `kv_head`, or `None` if there is no such head.
    pub fn keys(&self, kv_head: usize) -> Option<&[f64]> {
        self.k.get(kv_head).map(Vec::as_slice)
    }

    /// [S, Hd] values of kv head `kv_head`, or `None` if there is no such head.
    pub fn values(&self, kv_head: usize) -> Option<&[f64]> {
        self.v.get(kv_head).map(Vec::as_slice)
    }

    /// Forgets every position (a new sequence).
    pub fn clear(&mut self) {
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(Vec::clear);
    }

    fn check_fits(&self, cfg: &LayerConfig) -> Result<(), ReferenceError> {
        if (self.n_kv_heads, self.head_dim, self.max_seq)
            == (cfg.n_kv_heads, cfg.head_dim, cfg.max_seq)
        {
            Ok(())
        } else {
            Err(ReferenceError::CacheShapeMismatch {
                cache_kv_heads: self.n_kv_heads,
                cache_head_dim: self.head_dim,
                cache_max_seq: self.max_seq,
                kv_heads: cfg.n_kv_heads,
                head_dim: cfg.head_dim,
                max_seq: cfg.max_seq,
            })
        }
    }
}

/// Forward of one decoder layer for the T tokens in `x` ([T, D], f32) at positions
/// `start_pos..start_pos + T`, appending their K and V to `cache`. Returns [T, D].
/// `start_pos` must equal `cache.len()`.
pub fn layer_forward_f64(
    cfg: &LayerConfig,
    w: &LayerWeights,
    x: &[f32],
    start_pos: usize,
    cache: &mut KvCacheF64,
) -> Result<Vec<f64>, ReferenceError> {
    // Check everything before touching the cache, so an error leaves it as it was.
    w.check_shapes(cfg)?;
    cache.check_fits(cfg)?;
    let (d, hd) = (cfg.dim, cfg.head_dim);
    if x.is_empty() || !x.len().is_multiple_of(d) {
        return Err(ReferenceError::InputLength {
            len: x.len(),
            dim: d,
        });
    }
    let t_len = x.len() / d;
    let end = start_pos.saturating_add(t_len);
    if end > cfg.max_seq {
        return Err(ReferenceError::PositionOutOfRange {
            start_pos,
            end,
            max_seq: cfg.max_seq,
        });
    }
    if start_pos != cache.len() {
        return Err(ReferenceError::NonContiguousPosition {
            start_pos,
            cache_len: cache.len(),
        });
    }
    let eps = f64::from(cfg.rms_eps);
    let theta = f64::from(cfg.rope_theta);
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect(); // [T, D]

    // Projections, q/k norm, RoPE, cache append for all T tokens first; attention
    // below then reads the cache, which makes the causal mask a loop bound.
    let mut q_all = Vec::with_capacity(t_len); // T x [H*Hd]
    for (t, x_t) in x.chunks_exact(d).enumerate() {
        let pos = start_pos + t;
        let xn = rms_norm(x_t, &w.attn_norm, eps); // [D]
        let mut q = matvec(&w.wq, &xn, w.bq.as_deref()); // [H*Hd]
        let mut k = matvec(&w.wk, &xn, w.bk.as_deref()); // [KV*Hd]
        let v = matvec(&w.wv, &xn, w.bv.as_deref()); // [KV*Hd]
        for q_h in q.chunks_exact_mut(hd) {
            if let Some(qn) = &w.q_norm {
                let normed = rms_norm(q_h, qn, eps);
                q_h.copy_from_slice(&normed);
            }
            rope_f64(q_h, pos, theta, cfg.rope_layout);
        }
        for (kv_h, (k_h, v_h)) in k.chunks_exact_mut(hd).zip(v.chunks_exact(hd)).enumerate() {
            if let Some(kn) = &w.k_norm {
                let normed = rms_norm(k_h, kn, eps);
                k_h.copy_from_slice(&normed);
            }
            rope_f64(k_h, pos, theta, cfg.rope_layout);
            let store = cache.store;
            cache.k[kv_h].extend(k_h.iter().map(|&x| store.store(x)));
            cache.v[kv_h].extend(v_h.iter().map(|&x| store.store(x)));
        }
        q_all.push(q);
    }

    let scale = 1.0 / (hd as f64).sqrt();
    let group = cfg.group_size();
    let mut out = Vec::with_capacity(t_len * d); // [T, D]
    for (t, (x_t, q)) in x.chunks_exact(d).zip(&q_all).enumerate() {
        let visible = start_pos + t + 1; // positions 0..=own
        let mut attn = vec![0.0f64; cfg.q_dim()]; // [H*Hd]
        for (h, (q_h, o_h)) in q
            .chunks_exact(hd)
            .zip(attn.chunks_exact_mut(hd))
            .enumerate()
        {
            let kv_h = h / group;
            let keys = &cache.k[kv_h][..visible * hd]; // [S, Hd]
            let values = &cache.v[kv_h][..visible * hd]; // [S, Hd]
            if cache.store == KvStore::F16 {
                let f16s = |x: &[f64]| -> Vec<half::f16> {
                    x.iter().map(|&v| half::f16::from_f64(v)).collect()
                };
                let (k16, v16) = (f16s(keys), f16s(values));
                let q32: Vec<f32> = q_h.iter().map(|&v| v as f32).collect();
                let mut o32 = vec![0f32; hd];
                use vtpu_kernels::attention::{attention_scalar, AttnShape, KvRows};
                // Shapes hold by construction (one query row over `visible` keys).
                if attention_scalar(
                    &mut o32,
                    &q32,
                    KvRows::F16(&k16),
                    KvRows::F16(&v16),
                    AttnShape {
                        rows: 1,
                        hd,
                        s: visible,
                        per: 1,
                    },
                )
                .is_ok()
                {
                    o_h.iter_mut().zip(&o32).for_each(|(o, &v)| *o = v as f64);
                    continue;
                }
            }
            let scores: Vec<f64> = keys
                .chunks_exact(hd)
                .map(|k_s| dot(q_h, k_s) * scale)
                .collect();
            let probs = softmax(&scores); // [S]
            for (p, v_s) in probs.iter().zip(values.chunks_exact(hd)) {
                o_h.iter_mut().zip(v_s).for_each(|(o, v)| *o += p * v);
            }
        }
        let attn_out = matvec(&w.wo, &attn, None); // [D]
        let h: Vec<f64> = x_t.iter().zip(&attn_out).map(|(a, b)| a + b).collect(); // [D]

        let hn = rms_norm(&h, &w.ffn_norm, eps); // [D]
        let gate = matvec(&w.w_gate, &hn, None); // [F]
        let up = matvec(&w.w_up, &hn, None); // [F]
        let act: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect(); // [F]
        let mlp = matvec(&w.w_down, &act, None); // [D]
        out.extend(h.iter().zip(&mlp).map(|(a, b)| a + b));
    }
    Ok(out)
}

/// Rotates one head vector `x` ([Hd], Hd even) for position `pos`: pair `i` (chosen by
/// `layout`) turns by the angle `pos * theta^(-2i/Hd)`, as `(a, b) -> (a cos - b sin,
/// a sin + b cos)`. Hugging Face computes the same angle as `pos * inv_freq[i]`.
pub fn rope_f64(x: &mut [f64], pos: usize, theta: f64, layout: RopeLayout) {
    let hd = x.len();
    let half = hd / 2;
    for i in 0..half {
        let inv_freq = theta.powf(-((2 * i) as f64) / hd as f64);
        let (sin, cos) = (pos as f64 * inv_freq).sin_cos();
        let (ia, ib) = match layout {
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            RopeLayout::HalfSplit => (i, i + half),
        };
        let (a, b) = (x[ia], x[ib]);
        x[ia] = a * cos - b * sin;
        x[ib] = a * sin + b * cos;
    }
}

/// `x / sqrt(mean(x^2) + eps) * weight`, elementwise; `weight` has `x.len()` entries.
pub fn rms_norm(x: &[f64], weight: &[f32], eps: f64) -> Vec<f64> {
    let mean_sq = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (mean_sq + eps).sqrt();
    x.iter()
        .zip(weight)
        .map(|(v, &g)| v * inv * f64::from(g))
        .collect()
}

/// `W x (+ b)` for row-major `W` [out, in] with `in = x.len()`.
fn matvec(w: &[f32], x: &[f64], bias: Option<&[f32]>) -> Vec<f64> {
    let mut y: Vec<f64> = w
        .chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(&a, b)| f64::from(a) * b).sum())
        .collect();
    if let Some(b) = bias {
        y.iter_mut().zip(b).for_each(|(y, &b)| *y += f64::from(b));
    }
    y
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax of a non-empty slice, max-subtracted so exp never overflows.
fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// SiLU (swish): `x * sigmoid(x)`.
fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}
