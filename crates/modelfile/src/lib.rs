//! vtpu-modelfile: readers for model files (GGUF, Hugging Face directories).

pub mod backing;
pub mod fuzz;
pub mod gguf;
pub mod hf;

pub use backing::Backing;
