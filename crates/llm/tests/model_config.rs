//! Model configurations that would run silently wrong are refused, naming the field.

use vtpu_llm::model::ModelConfig;
use vtpu_modelfile::hf::HfConfig;

fn config(extra: &str) -> Result<ModelConfig, String> {
    let text = format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "max_position_embeddings": 256,
            "vocab_size": 100 {extra}}}"#
    );
    let c = HfConfig::from_json(&text, None).map_err(|e| e.to_string())?;
    ModelConfig::from_hf(&c, "config.json").map_err(|e| e.to_string())
}

#[test]
fn plain_llama_config_maps() {
    let c = config("").unwrap();
    assert_eq!(
        (c.n_layers, c.layer.dim, c.layer.head_dim, c.vocab),
        (2, 64, 16, 100)
    );
    assert!(config(
        r#", "hidden_act": "silu", "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}"#
    )
    .is_ok());
}

#[test]
fn unsupported_features_are_errors_naming_the_field() {
    for (extra, field) in [
        (
            r#", "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}"#,
            "rope_parameters.rope_type",
        ),
        (
            r#", "rope_scaling": {"type": "linear", "factor": 2.0}"#,
            "rope_scaling",
        ),
        (r#", "hidden_act": "gelu""#, "hidden_act"),
        (r#", "use_sliding_window": true"#, "use_sliding_window"),
    ] {
        let e = config(extra).unwrap_err();
        assert!(
            e.contains(field) && e.contains("config.json"),
            "{extra}: {e}"
        );
    }
}
