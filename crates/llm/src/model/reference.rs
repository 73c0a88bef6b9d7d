//! The plain reference forward of a whole model: every weight dequantized to f32 once,
//! layers through [`crate::reference::layer_forward_f64`] (f64 inside each layer, the
//! activations rounded to f32 between layers as the vTPU keeps them), and the logits in
//! f64. Slow and obviously right: the model tests compare the vTPU against it.

use super::config::ModelConfig;
use super::load::{LoadError, TensorSource};
use super::names::tensor_name;
use crate::layer_coords::TensorKind;
use crate::reference::{layer_forward_f64, rms_norm, KvCacheF64, KvStore};
use crate::weights::LayerWeights;
use vtpu_phext::DType;

/// A tensor's elements as f32 (f32, f16 and bf16 exactly; quantized blocks by the
/// kernels' dequantizer, which is exact for the format).
pub fn tensor_f32<S: TensorSource + ?Sized>(src: &S, name: &str) -> Result<Vec<f32>, LoadError> {
    let t = src.tensor(name)?.ok_or_else(|| LoadError::Missing {
        file: src.origin(),
        name: name.to_string(),
    })?;
    let n = t.shape[0] * t.shape[1];
    let b = t.bytes;
    let bad = |why: String| LoadError::Tensor {
        file: src.origin(),
        name: name.to_string(),
        why,
    };
    let out = match t.dtype {
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        d => {
            let mut v = vec![0.0; n];
            let cols = t.shape[1];
            let rb = d.bytes_for(cols).map_err(|e| bad(e.to_string()))?;
            for (row, src) in v.chunks_exact_mut(cols).zip(b.chunks_exact(rb)) {
                vtpu_runtime::common::dequantize_row(d, src, row)
                    .map_err(|e| bad(e.to_string()))?;
            }
            v
        }
    };
    Ok(out)
}

/// Every weight of the model in f32.
pub struct ReferenceModel {
    pub cfg: ModelConfig,
    pub embd: Vec<f32>,
    pub output_norm: Vec<f32>,
    pub output: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    caches: Vec<KvCacheF64>,
    pos: usize,
}

impl ReferenceModel {
    /// Every weight in f32, an exact f64 KV cache.
    pub fn load<S: TensorSource + ?Sized>(
        src: &S,
        cfg: &ModelConfig,
    ) -> Result<ReferenceModel, LoadError> {
        ReferenceModel::load_with_kv(src, cfg, KvStore::Exact)
    }

    /// Like [`ReferenceModel::load`], with keys and values stored as `kv` says (the
    /// reference for a vTPU model with an f16 KV cache).
    pub fn load_with_kv<S: TensorSource + ?Sized>(
        src: &S,
        cfg: &ModelConfig,
        kv: KvStore,
    ) -> Result<ReferenceModel, LoadError> {
        let nm = |l: Option<usize>, k| tensor_name(src.naming(), l, k);
        let get = |l, k| tensor_f32(src, &nm(l, k));
        let opt = |on: bool, l, k| -> Result<Option<Vec<f32>>, LoadError> {
            if on {
                get(l, k).map(Some)
            } else {
                Ok(None)
            }
        };
        let c = &cfg.layer;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let l = Some(l);
            use TensorKind as K;
            layers.push(LayerWeights {
                attn_norm: get(l, K::AttnNorm)?,
                wq: get(l, K::Wq)?,
                wk: get(l, K::Wk)?,
                wv: get(l, K::Wv)?,
                bq: opt(c.qkv_bias, l, K::Bq)?,
                bk: opt(c.qkv_bias, l, K::Bk)?,
                bv: opt(c.qkv_bias, l, K::Bv)?,
                q_norm: opt(c.qk_norm, l, K::QNorm)?,
                k_norm: opt(c.qk_norm, l, K::KNorm)?,
                wo: get(l, K::Wo)?,
                ffn_norm: get(l, K::FfnNorm)?,
                w_gate: get(l, K::WGate)?,
                w_up: get(l, K::WUp)?,
                w_down: get(l, K::WDown)?,
            });
        }
        let embd = get(None, TensorKind::TokenEmbd)?;
        let output = if cfg.tied_embeddings {
            embd.clone()
        } else {
            get(None, TensorKind::Output)?
        };
        let caches = (0..cfg.n_layers)
            .map(|_| KvCacheF64::with_store(c, kv))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LoadError::Other(e.to_string()))?;
        Ok(ReferenceModel {
            cfg: cfg.clone(),
            embd,
            output_norm: get(None, TensorKind::OutputNorm)?,
            output,
            layers,
            caches,
            pos: 0,
        })
    }

    /// Append `tokens` and return the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f64>, LoadError> {
        let d = self.cfg.layer.dim;
        let mut x: Vec<f32> = Vec::with_capacity(tokens.len() * d);
        for &t in tokens {
            let t = t as usize;
            let row = self
                .embd
                .get(t * d..(t + 1) * d)
                .ok_or_else(|| LoadError::Other(format!("token {t} outside the vocabulary")))?;
            x.extend_from_slice(row);
        }
        for (w, cache) in self.layers.iter().zip(self.caches.iter_mut()) {
            let y = layer_forward_f64(&self.cfg.layer, w, &x, self.pos, cache)
                .map_err(|e| LoadError::Other(e.to_string()))?;
            x = y.iter().map(|&v| v as f32).collect();
        }
        self.pos += tokens.len();
        let last: Vec<f64> = x[x.len() - d..].iter().map(|&v| v as f64).collect();
        let h = rms_norm(&last, &self.output_norm, self.cfg.layer.rms_eps as f64);
        Ok(self
            .output
            .chunks_exact(d)
            .map(|row| row.iter().zip(&h).map(|(&w, &v)| w as f64 * v).sum())
            .collect())
    }
}
