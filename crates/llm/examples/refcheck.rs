//! Compare the vTPU's logits with the f64 reference forward and with llama.cpp's
//! recorded top-5 on the first step of each golden prompt (a diagnostic).
//! Usage: cargo run --release -p vtpu-llm --example refcheck -- MODEL.gguf GOLDEN.json
use vtpu_llm::model::reference::ReferenceModel;
use vtpu_llm::model::{GgufSource, Model, ModelConfig, ModelOptions};
use vtpu_modelfile::gguf::GgufFile;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a[2]).unwrap()).unwrap();
    let file = GgufFile::open(&a[1]).unwrap();
    let cfg = ModelConfig::from_gguf(&file).unwrap();
    let src = GgufSource::new(file);
    let mut r = ReferenceModel::load(&src, &cfg).unwrap();
    let mut m = Model::load(
        &src,
        cfg,
        &ModelOptions {
            ctx: Some(256),
            pin: false,
            ..Default::default()
        },
    )
    .unwrap();
    for p in g["prompts"].as_array().unwrap() {
        let ids: Vec<u32> = p["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        m.reset();
        let got = m.forward(&ids).unwrap().to_vec();
        let mut rr = ReferenceModel::load(&src, &r.cfg).unwrap();
        let want = rr.forward(&ids).unwrap();
        let _ = &mut r;
        let top5 = p["steps"][0]["top5"].as_array().unwrap();
        for e in top5 {
            let id = e[0].as_u64().unwrap() as usize;
            println!(
                "id {id:6}: llama.cpp {:9.4}  vTPU {:9.4}  f64 ref {:9.4}",
                e[1].as_f64().unwrap(),
                got[id],
                want[id]
            );
        }
        let maxd = got
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        println!("max |vTPU - f64| over the vocabulary: {maxd:.4}\n");
    }
}
