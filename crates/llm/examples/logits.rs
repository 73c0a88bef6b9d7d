//! Print the vTPU's top-5 logits after the token ids given (a diagnostic, to set beside
//! llama.cpp's for the same ids). Usage:
//! cargo run --release -p vtpu-llm --example logits -- MODEL.gguf 504,2,17 [sentrons] [f16|f32]
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_modelfile::gguf::GgufFile;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let file = GgufFile::open(&a[1]).expect("model");
    let ids: Vec<u32> = a[2].split(',').map(|s| s.parse().expect("id")).collect();
    let sentrons = a.get(3).map_or(1, |s| s.parse().expect("sentrons"));
    let kv_type = match a.get(4).map(String::as_str) {
        Some("f32") => vtpu_phext::DType::F32,
        _ => vtpu_phext::DType::F16,
    };
    let mut cfg = ModelConfig::from_gguf(&file).expect("config");
    // VTPU_LAYERS=k: only the first k layers (then VTPU_DUMP=FILE writes the last
    // token's hidden state after them, f32 little-endian, for comparing with llama.cpp's
    // `l_out-{k-1}`).
    if let Some(k) = std::env::var("VTPU_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.n_layers = k;
    }
    let src = GgufSource::new(file);
    let opts = ModelOptions {
        sentrons,
        ctx: Some(256),
        pin: false,
        kv_type,
        ..Default::default()
    };
    let mut m = Model::load(&src, cfg, &opts).expect("load");
    let logits = m.forward(&ids).expect("forward").to_vec();
    if let Ok(path) = std::env::var("VTPU_DUMP") {
        let page = m
            .space()
            .get(vtpu_llm::layer_coords::hidden(0).expect("coord"))
            .expect("hidden page");
        let d = m.cfg.layer.dim;
        let mut all = vec![0f32; page.elems()];
        page.read_f32(0, &mut all).expect("read");
        let last = if std::env::var_os("VTPU_DUMP_ALL").is_some() {
            &all[..ids.len() * d]
        } else {
            &all[(ids.len() - 1) * d..ids.len() * d]
        };
        let bytes: Vec<u8> = last.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(path, bytes).expect("write");
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&x, &y| logits[y].total_cmp(&logits[x]));
    let top: Vec<String> = order[..5]
        .iter()
        .map(|&i| format!("[{i}, {}]", logits[i]))
        .collect();
    println!("[{}]", top.join(", "));
}
