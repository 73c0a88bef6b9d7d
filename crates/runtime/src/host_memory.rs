//! How the host allocator treats the buffers a run frees.
//!
//! A prefill call allocates and frees tiles of megabytes per op (a `[512, 1536]` f32
//! activation is 3 MB), on every sentron thread. glibc's malloc gives the top of each
//! thread's heap back to the kernel as soon as more than its trim threshold is free, so
//! the next op's buffer is faulted in again page by page: measured on SmolLM2-135M
//! pp512 (2 sentrons, Zen 4 under KVM), about 68 000 minor faults (270 MB zeroed by the
//! kernel) per 512-token call, 10-15% of its time. Keeping a pad of freed memory at the
//! top of every heap removes them (a few hundred faults per call) without raising peak
//! RSS: the pad only holds pages that were already touched.

use std::sync::OnceLock;

/// Bytes each malloc heap keeps when its top is freed (a prefill's working set of tiles
/// on one sentron, with room to spare).
pub const RETAINED_PAD: usize = 256 << 20;

/// Ask the host allocator to keep freed memory for reuse instead of returning it to the
/// kernel at every free (glibc: `M_TOP_PAD`). Process-wide, so the binary calls it once
/// at start; a no-op elsewhere. Returns whether the setting took.
pub fn retain_freed_memory() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(set_top_pad)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_top_pad() -> bool {
    // SAFETY: mallopt only changes glibc's tuning parameters; it is safe to call at any
    // time from any thread.
    unsafe { libc::mallopt(libc::M_TOP_PAD, RETAINED_PAD as libc::c_int) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_top_pad() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_pad_and_a_second_call_agrees() {
        assert!(retain_freed_memory());
        assert!(retain_freed_memory());
    }
}
