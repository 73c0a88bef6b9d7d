//! vtpu-llm
