//! vtpu-llm: the transformer side of vtpu.
//!
//! For now this is the correctness foundation: the layer configuration (with the
//! dimension alphabet every shape comment uses, see [`config`]), the layer weights, and
//! a plain f64 reference forward of one decoder layer ([`reference`]) that is checked
//! against Hugging Face transformers goldens in `testdata/goldens/`.

pub mod chat;
pub mod config;
pub mod generate;
pub mod layer_bench;
pub mod layer_coords;
pub mod layer_pages;
pub mod layer_program;
pub mod layer_runner;
pub mod model;
pub mod program_builder;
pub mod reference;
pub mod sampler;
pub mod weights;

pub use config::{ConfigError, LayerConfig, RopeLayout};
pub use layer_program::{layer_program, LayerPlan, Packer, PlanError};
pub use layer_runner::{LayerError, LayerOptions, LayerReport, LayerRunner};
pub use reference::{layer_forward_f64, rms_norm, rope_f64, KvCacheF64, KvStore, ReferenceError};
pub use weights::{LayerWeights, SplitMix64, WeightsError};
