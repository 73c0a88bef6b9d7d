//! vtpu-runtime
