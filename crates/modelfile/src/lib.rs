//! vtpu-modelfile: readers for model files (GGUF, Hugging Face directories).
