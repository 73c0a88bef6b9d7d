//! Streaming-read memory bandwidth of this machine, with 1 and 2 threads: the ceiling a
//! decode step (which reads every weight once per token) can approach.
//!
//! Method: a buffer much larger than the last-level cache (1 GiB by default) filled with
//! known values, so its pages are really backed; each run sums it as u64 lanes (8
//! independent accumulators, which the compiler turns into vector adds, AVX2 when the CPU
//! has it), so the loop is limited by memory, not by the adds. With 2 threads each sums
//! one half; the time runs from a barrier that releases both to the last one finishing.
//! Every sum is checked against its closed form before its time counts. The buffer asks
//! for transparent huge pages (Linux), as vtpu's weight arena does: on 4 KiB pages the
//! figure measured the TLB as much as the memory, and decode from the arena read faster
//! than that "ceiling" (Qwen2.5 tg128 at 129% of it, 2026-12-07 22:08 UTC). Two warm-up
//! runs, then the median of `--runs` (default 7). Threads are pinned one per CPU on Linux
//! when the kernel allows it.
//!
//! Output (stdout, one JSON object): `read_gbs_1t`, `read_gbs_2t` (GB/s, 1 GB = 1e9
//! bytes, the median run), the samples, the buffer size and what was used.
//!
//! Run: `cargo run --release --example membw [-- --mib 1024 --runs 7]`

use anyhow::{bail, Context, Result};
use std::sync::Barrier;
use std::time::Instant;

/// Lanes summed independently: enough for two 256-bit registers of u64 per iteration,
/// so the adds never wait on each other.
const LANES: usize = 8;
const WARMUP_RUNS: usize = 2;

/// The sum of `s` as wrapping u64, in `LANES` independent accumulators so it vectorizes.
#[inline(always)]
fn sum_lanes(s: &[u64]) -> u64 {
    let mut acc = [0u64; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &x| a.wrapping_add(x));
    acc.iter().fold(tail, |a, &x| a.wrapping_add(x))
}

/// The same loop compiled with AVX2 enabled (the default x86-64 target has only SSE2).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(s: &[u64]) -> u64 {
    sum_lanes(s)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn sum(s: &[u64], avx2: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when `has_avx2()` detected the feature.
        return unsafe { sum_avx2(s) };
    }
    let _ = avx2;
    sum_lanes(s)
}

/// Sum of `start..start + n` as wrapping u64: the expected result for a slice of the
/// buffer, which holds its own indices.
fn expected_sum(start: u64, n: u64) -> u64 {
    // (start + end - 1) * n / 2 with the division done on whichever factor is even, so
    // the wrapping product stays exact modulo 2^64.
    let last = start.wrapping_add(n).wrapping_sub(1);
    let (a, b) = (start.wrapping_add(last), n);
    if a % 2 == 0 {
        (a / 2).wrapping_mul(b)
    } else {
        a.wrapping_mul(b / 2)
    }
}

/// Pins the calling thread to CPU `cpu`. Returns false when it cannot (then the scheduler
/// places the thread; the figures are still valid, only noisier).
#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) -> bool {
    // glibc's cpu_set_t: 1024 bits. std exposes no affinity call, and pulling a crate
    // into the root package for one example is not worth it.
    const WORDS: usize = 1024 / 64;
    if cpu >= WORDS * 64 {
        return false;
    }
    let mut mask = [0u64; WORDS];
    mask[cpu / 64] = 1 << (cpu % 64);
    extern "C" {
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }
    // SAFETY: pid 0 = the calling thread; the mask is a live array of the size passed.
    unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_cpu: usize) -> bool {
    false
}

/// One timed pass over `buf` split evenly across `threads` threads (thread i on CPU i).
/// Returns (seconds, all threads pinned).
fn timed_pass(buf: &[u64], threads: usize, avx2: bool) -> Result<(f64, bool)> {
    let per = buf.len().div_ceil(threads).max(1);
    let parts: Vec<&[u64]> = buf.chunks(per).collect();
    // Every reader and this thread meet at the barrier, so spawning is not timed.
    let barrier = Barrier::new(parts.len() + 1);
    let (secs, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .copied()
            .enumerate()
            .map(|(i, part)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let pinned = pin_current_thread(i);
                    barrier.wait();
                    let s = sum(std::hint::black_box(part), avx2);
                    (i, std::hint::black_box(s), pinned)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (t0.elapsed().as_secs_f64(), results)
    });
    let mut all_pinned = true;
    for r in results {
        let Ok((i, got, pinned)) = r else {
            bail!("a reader thread panicked");
        };
        let start = (i * per) as u64;
        let n = per.min(buf.len() - i * per) as u64;
        let want = expected_sum(start, n);
        if got != want {
            bail!("thread {i}: sum {got:#x} != expected {want:#x}: the read loop is wrong");
        }
        all_pinned &= pinned;
    }
    Ok((secs, all_pinned))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Args {
    mib: usize,
    runs: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { mib: 1024, runs: 7 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .with_context(|| format!("{name}: `{v}` is not a whole number"))
        };
        match flag.as_str() {
            "--mib" => a.mib = value("--mib")?,
            "--runs" => a.runs = value("--runs")?,
            "-h" | "--help" => {
                println!("usage: membw [--mib N (64..=65536, default 1024)] [--runs N (>= 5, default 7)]");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    // Below 64 MiB the buffer can sit in a large L3 and the figure is no longer memory's.
    if !(64..=65536).contains(&a.mib) {
        bail!("--mib must be 64..=65536, got {}", a.mib);
    }
    if a.runs < 5 {
        bail!("--runs must be at least 5, got {}", a.runs);
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let bytes = a.mib << 20;
    let n = bytes / 8;
    let avx2 = has_avx2();
    // Writing every element backs every page, so the timed passes read real memory
    // (an untouched allocation reads the shared zero page, which sits in cache).
    let mut buf: Vec<u64> = Vec::with_capacity(n);
    advise_huge_pages(buf.as_ptr() as usize, n * 8);
    buf.extend(0..n as u64);
    let mut out = serde_json::Map::new();
    let mut pinned_all = true;
    for threads in [1usize, 2] {
        let mut samples = Vec::with_capacity(a.runs);
        for run in 0..WARMUP_RUNS + a.runs {
            let (secs, pinned) = timed_pass(&buf, threads, avx2)?;
            pinned_all &= pinned;
            if run >= WARMUP_RUNS {
                samples.push(bytes as f64 / secs / 1e9);
            }
        }
        let shown: Vec<f64> = samples
            .iter()
            .map(|g| (g * 100.0).round() / 100.0)
            .collect();
        let med = median(&mut samples);
        out.insert(
            format!("read_gbs_{threads}t"),
            serde_json::json!((med * 100.0).round() / 100.0),
        );
        out.insert(format!("samples_gbs_{threads}t"), serde_json::json!(shown));
    }
    out.insert("buffer_bytes".into(), serde_json::json!(bytes));
    out.insert("runs".into(), serde_json::json!(a.runs));
    out.insert("warmup_runs".into(), serde_json::json!(WARMUP_RUNS));
    out.insert(
        "kernel".into(),
        serde_json::json!(if avx2 { "avx2" } else { "generic" }),
    );
    out.insert("pinned".into(), serde_json::json!(pinned_all));
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_sum_matches_a_direct_sum() {
        for (start, n) in [
            (0u64, 1u64),
            (0, 10),
            (5, 7),
            (1 << 40, 1001),
            (u64::MAX - 3, 9),
        ] {
            let direct = (0..n).fold(0u64, |a, i| a.wrapping_add(start.wrapping_add(i)));
            assert_eq!(expected_sum(start, n), direct, "start {start} n {n}");
        }
    }

    #[test]
    fn the_lane_sum_matches_a_plain_sum_with_a_tail() {
        let v: Vec<u64> = (0..1003u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let plain = v.iter().fold(0u64, |a, &x| a.wrapping_add(x));
        assert_eq!(sum(&v, false), plain);
        assert_eq!(sum(&v, has_avx2()), plain);
    }
}

/// Ask for transparent huge pages over the whole 4 KiB pages of `[addr, addr + len)`
/// before they are first written (a hint: without THP the buffer is the same, on 4 KiB
/// pages).
fn advise_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = addr.next_multiple_of(4096);
        let end = (addr + len) / 4096 * 4096;
        if end > start {
            // SAFETY: the range lies inside this process's own allocation (`buf`'s
            // capacity); MADV_HUGEPAGE changes how its pages are backed, never their
            // contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}
