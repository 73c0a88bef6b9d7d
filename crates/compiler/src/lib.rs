//! vtpu-compiler
