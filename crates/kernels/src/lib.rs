//! vtpu-kernels
