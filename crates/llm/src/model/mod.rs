//! Real models on the vTPU: file -> phext space -> program -> sentrons -> logits.
//!
//! - [`config`]: the model's hyper-parameters from GGUF metadata or `config.json`;
//! - [`names`]: tensor names per file family;
//! - [`load`]: tensors into phext pages (zero-copy where the kernels read the dtype);
//! - [`program`]: the whole model as one SIW stream per sentron;
//! - [`runner`]: a loaded model on a persistent session: tokens in, logits out;
//! - [`image`]: a model saved as a phext space (`vtpu convert`) and loaded back zero-copy.

pub mod config;
pub mod gguf_source;
pub mod image;
pub mod load;
pub mod names;
pub mod program;
pub mod reference;
pub mod runner;

pub use config::{Arch, ModelConfig, ModelConfigError};
pub use gguf_source::GgufSource;
pub use load::{Capacity, LoadError, SrcTensor, TensorSource};
pub use names::{tensor_name, Naming};
pub use program::{model_program, model_program_batch, vocab_chunks, ModelPlan};
pub use runner::{
    KvSnapshot, MachineHost, Model, ModelError, ModelOptions, RunStats, StepIo, MAX_SLOTS,
};
pub mod hf_source;
pub use hf_source::HfSource;
