//! `VTPU_KERNELS` is read at first use. Its own test binary with a single test, so no
//! other test can touch the process-wide level first.

use vtpu_kernels::KernelLevel;

#[test]
fn env_var_forces_the_initial_level() {
    // Set before anything in this process asks for the level.
    std::env::set_var("VTPU_KERNELS", "scalar");
    assert_eq!(vtpu_kernels::level(), KernelLevel::Scalar);
    // Changing the variable later has no effect: it is read once.
    std::env::set_var("VTPU_KERNELS", "avx512");
    assert_eq!(vtpu_kernels::level(), KernelLevel::Scalar);
    // set_level still overrides it.
    assert_eq!(
        vtpu_kernels::set_level(KernelLevel::Avx512),
        vtpu_kernels::detected()
    );
}
