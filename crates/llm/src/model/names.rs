//! Tensor names of the two file families, per tensor kind.

use crate::layer_coords::TensorKind;

/// How a file names its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// llama.cpp's GGUF names: `blk.N.attn_q.weight`, `token_embd.weight`, ...
    Gguf,
    /// Hugging Face transformers: `model.layers.N.self_attn.q_proj.weight`, ...
    Hf,
}

/// The name of tensor `kind` of layer `layer` (`None` for model-wide tensors).
pub fn tensor_name(naming: Naming, layer: Option<usize>, kind: TensorKind) -> String {
    use TensorKind as K;
    let l = layer.unwrap_or(0);
    match naming {
        Naming::Gguf => {
            let t = match kind {
                K::TokenEmbd => return "token_embd.weight".into(),
                K::OutputNorm => return "output_norm.weight".into(),
                K::Output => return "output.weight".into(),
                K::RopeTable => return "rope_table".into(),
                K::AttnNorm => "attn_norm.weight",
                K::Wq => "attn_q.weight",
                K::Wk => "attn_k.weight",
                K::Wv => "attn_v.weight",
                K::Bq => "attn_q.bias",
                K::Bk => "attn_k.bias",
                K::Bv => "attn_v.bias",
                K::QNorm => "attn_q_norm.weight",
                K::KNorm => "attn_k_norm.weight",
                K::Wo => "attn_output.weight",
                K::FfnNorm => "ffn_norm.weight",
                K::WGate => "ffn_gate.weight",
                K::WUp => "ffn_up.weight",
                K::WDown => "ffn_down.weight",
            };
            format!("blk.{l}.{t}")
        }
        Naming::Hf => {
            let t = match kind {
                K::TokenEmbd => return "model.embed_tokens.weight".into(),
                K::OutputNorm => return "model.norm.weight".into(),
                K::Output => return "lm_head.weight".into(),
                K::RopeTable => return "rope_table".into(),
                K::AttnNorm => "input_layernorm.weight",
                K::Wq => "self_attn.q_proj.weight",
                K::Wk => "self_attn.k_proj.weight",
                K::Wv => "self_attn.v_proj.weight",
                K::Bq => "self_attn.q_proj.bias",
                K::Bk => "self_attn.k_proj.bias",
                K::Bv => "self_attn.v_proj.bias",
                K::QNorm => "self_attn.q_norm.weight",
                K::KNorm => "self_attn.k_norm.weight",
                K::Wo => "self_attn.o_proj.weight",
                K::FfnNorm => "post_attention_layernorm.weight",
                K::WGate => "mlp.gate_proj.weight",
                K::WUp => "mlp.up_proj.weight",
                K::WDown => "mlp.down_proj.weight",
            };
            format!("model.layers.{l}.{t}")
        }
    }
}

/// The layer and kind of a GGUF tensor name (`blk.3.attn_q.weight` -> (Some(3), Wq)).
pub fn parse_gguf_name(name: &str) -> Option<(Option<usize>, TensorKind)> {
    use TensorKind as K;
    const KINDS: [TensorKind; 17] = [
        K::TokenEmbd,
        K::OutputNorm,
        K::Output,
        K::AttnNorm,
        K::Wq,
        K::Wk,
        K::Wv,
        K::Bq,
        K::Bk,
        K::Bv,
        K::QNorm,
        K::KNorm,
        K::Wo,
        K::FfnNorm,
        K::WGate,
        K::WUp,
        K::WDown,
    ];
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|l| l.parse::<usize>().ok());
    KINDS.iter().copied().find_map(|k| {
        let l = if k.is_model_wide() {
            None
        } else {
            Some(layer?)
        };
        (tensor_name(Naming::Gguf, l, k) == name).then_some((l, k))
    })
}

/// The phext coordinate a GGUF tensor is placed at (its whole-tensor page).
pub fn coord_of(name: &str) -> Option<vtpu_phext::Coord> {
    let (l, k) = parse_gguf_name(name)?;
    crate::layer_coords::weight(l.unwrap_or(0), k, 0).ok()
}
