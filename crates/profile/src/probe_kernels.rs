//! The probe's inner loops: a streaming read, independent f32 FMA chains and int8 dot
//! products, each at the widest instruction set detected at run time (AVX-512 / AVX2 /
//! portable), so the ceilings are what the kernels of this machine can reach.
//!
//! Each function returns a value derived from everything it computed, which the caller
//! folds into a checksum, so the optimizer cannot drop the work.

/// Which instruction set a measurement used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// The widest level the f32 FMA and streaming-read loops can use here.
pub fn float_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The int8 dot product used: VNNI (vpdpbusd) where AVX-512 VNNI exists, else AVX2's
/// vpmaddubsw + vpmaddwd, else portable.
pub fn int8_isa() -> (Isa, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw")
        {
            return (Isa::Avx512, "avx512-vnni vpdpbusd");
        }
        if std::is_x86_feature_detected!("avx2") {
            return (Isa::Avx2, "avx2 vpmaddubsw+vpmaddwd");
        }
    }
    (Isa::Portable, "portable i32 multiply-add")
}

/// Sum `buf` as u64 lanes (every byte is read once).
pub fn read_sum(buf: &[u64], isa: Isa) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the level was detected at run time by `float_isa`.
        match isa {
            Isa::Avx512 => return unsafe { x86::read_avx512(buf) },
            Isa::Avx2 => return unsafe { x86::read_avx2(buf) },
            Isa::Portable => {}
        }
    }
    let _ = isa;
    let mut acc = [0u64; 8];
    let chunks = buf.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(x);
        }
    }
    acc.iter().chain(rest).fold(0u64, |s, &x| s.wrapping_add(x))
}

/// FMA lanes per iteration of [`fma_loop`]: independent accumulators, enough to cover
/// the FMA latency (4 cycles) times the FMA pipes (2).
pub const FMA_CHAINS: usize = 12;

/// `iters` iterations of `FMA_CHAINS` vector FMAs; returns (flops, checksum).
pub fn fma_loop(iters: u64, isa: Isa) -> (u64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the level was detected at run time by `float_isa`.
        match isa {
            Isa::Avx512 => {
                return (iters * FMA_CHAINS as u64 * 16 * 2, unsafe {
                    x86::fma_avx512(iters)
                })
            }
            Isa::Avx2 => {
                return (iters * FMA_CHAINS as u64 * 8 * 2, unsafe {
                    x86::fma_avx2(iters)
                })
            }
            Isa::Portable => {}
        }
    }
    let _ = isa;
    let mut acc = [1.0f32; FMA_CHAINS];
    let (a, b) = (0.999_999f32, 1e-7f32);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * a + b;
        }
        acc = std::hint::black_box(acc);
    }
    (iters * FMA_CHAINS as u64 * 2, acc.iter().sum())
}

/// `iters` iterations of `FMA_CHAINS` int8 dot-product steps; returns (ops, checksum)
/// with one multiply and one add per int8 pair (the convention FMA = 2 follows).
pub fn int8_loop(iters: u64, isa: Isa) -> (u64, i64) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the level was detected at run time by `int8_isa`.
        match isa {
            Isa::Avx512 => {
                return (iters * FMA_CHAINS as u64 * 64 * 2, unsafe {
                    x86::dot_vnni(iters)
                })
            }
            Isa::Avx2 => {
                return (iters * FMA_CHAINS as u64 * 32 * 2, unsafe {
                    x86::dot_avx2(iters)
                })
            }
            Isa::Portable => {}
        }
    }
    let _ = isa;
    let mut acc = [0i32; FMA_CHAINS];
    let a: [u8; 4] = [1, 2, 3, 4];
    let b: [i8; 4] = [-1, 1, -1, 1];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            let mut s = 0i32;
            for k in 0..4 {
                s += a[k] as i32 * b[k] as i32;
            }
            *x = x.wrapping_add(s);
        }
        acc = std::hint::black_box(acc);
    }
    (
        iters * FMA_CHAINS as u64 * 4 * 2,
        acc.iter().map(|&x| x as i64).sum(),
    )
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn read_avx512(buf: &[u64]) -> u64 {
        let n = buf.len() / 32 * 32;
        let p = buf.as_ptr();
        let (mut a, mut b, mut c, mut d) = (
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
        );
        let mut i = 0;
        while i < n {
            // SAFETY: i + 32 <= n <= buf.len(); unaligned loads.
            unsafe {
                a = _mm512_add_epi64(a, _mm512_loadu_si512(p.add(i) as *const _));
                b = _mm512_add_epi64(b, _mm512_loadu_si512(p.add(i + 8) as *const _));
                c = _mm512_add_epi64(c, _mm512_loadu_si512(p.add(i + 16) as *const _));
                d = _mm512_add_epi64(d, _mm512_loadu_si512(p.add(i + 24) as *const _));
            }
            i += 32;
        }
        let s = _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d));
        let mut tail = _mm512_reduce_add_epi64(s) as u64;
        for &x in &buf[n..] {
            tail = tail.wrapping_add(x);
        }
        tail
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn read_avx2(buf: &[u64]) -> u64 {
        let n = buf.len() / 16 * 16;
        let p = buf.as_ptr();
        let (mut a, mut b, mut c, mut d) = (
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
        );
        let mut i = 0;
        while i < n {
            // SAFETY: i + 16 <= n <= buf.len(); unaligned loads.
            unsafe {
                a = _mm256_add_epi64(a, _mm256_loadu_si256(p.add(i) as *const _));
                b = _mm256_add_epi64(b, _mm256_loadu_si256(p.add(i + 4) as *const _));
                c = _mm256_add_epi64(c, _mm256_loadu_si256(p.add(i + 8) as *const _));
                d = _mm256_add_epi64(d, _mm256_loadu_si256(p.add(i + 12) as *const _));
            }
            i += 16;
        }
        let s = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
        let mut lanes = [0u64; 4];
        // SAFETY: lanes is 32 bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, s) };
        let mut t = lanes.iter().fold(0u64, |x, &y| x.wrapping_add(y));
        for &x in &buf[n..] {
            t = t.wrapping_add(x);
        }
        t
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(iters: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); super::FMA_CHAINS];
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in acc {
            s = _mm512_add_ps(s, x);
        }
        _mm512_reduce_add_ps(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(iters: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); super::FMA_CHAINS];
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: lanes is 32 bytes.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        lanes.iter().sum()
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_vnni(iters: u64) -> i64 {
        let mut acc = [_mm512_setzero_si512(); super::FMA_CHAINS];
        let a = _mm512_set1_epi8(3);
        let b = _mm512_set1_epi8(-1);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in acc {
            s = _mm512_add_epi32(s, x);
        }
        _mm512_reduce_add_epi32(s) as i64
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_avx2(iters: u64) -> i64 {
        let mut acc = [_mm256_setzero_si256(); super::FMA_CHAINS];
        let a = _mm256_set1_epi8(3);
        let b = _mm256_set1_epi8(-1);
        let ones = _mm256_set1_epi16(1);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                // u8 x i8 -> pairs summed to i16 -> pairs summed to i32, as the q8
                // dot kernels do without VNNI.
                let p = _mm256_maddubs_epi16(a, b);
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(p, ones));
            }
        }
        let mut s = _mm256_setzero_si256();
        for x in acc {
            s = _mm256_add_epi32(s, x);
        }
        let mut lanes = [0i32; 8];
        // SAFETY: lanes is 32 bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, s) };
        lanes.iter().map(|&x| x as i64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_reads_every_element() {
        let buf: Vec<u64> = (0..1000u64).map(|i| i * 3 + 1).collect();
        let want: u64 = buf.iter().sum();
        for isa in [float_isa(), Isa::Portable] {
            assert_eq!(read_sum(&buf, isa), want, "{isa:?}");
        }
    }

    #[test]
    fn int8_loops_compute_the_same_dot_products() {
        // Each chain adds (a . b) per iteration over its lanes; the checksums of two
        // levels differ only by the vector width, so compare per int8 pair.
        let (ops, sum) = int8_loop(10, int8_isa().0);
        let (pops, psum) = int8_loop(10, Isa::Portable);
        // portable: a . b = -1 + 2 - 3 + 4 = 2 per 4 pairs; x86: 3 * -1 = -3 per pair.
        assert_eq!(psum, 2 * 10 * FMA_CHAINS as i64);
        assert_eq!(pops, 10 * FMA_CHAINS as u64 * 8);
        if int8_isa().0 != Isa::Portable {
            assert_eq!(sum, -3 * (ops / 2) as i64);
        }
    }
}
