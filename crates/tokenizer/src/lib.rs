//! vtpu-tokenizer: text <-> token ids.
