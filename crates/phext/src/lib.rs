//! vtpu-phext
