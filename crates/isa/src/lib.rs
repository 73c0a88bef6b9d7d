//! vtpu-isa
