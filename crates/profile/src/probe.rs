//! `vtpu probe`: this machine's measured ceilings, measured once and cached.
//!
//! Per thread count 1..=cores: streaming-read bandwidth (a buffer at least 8x the
//! last-level cache, each thread reading its own contiguous share), peak f32 FMA
//! GFLOP/s and int8 dot-product GOP/s (independent chains in registers, FMA = 2 and one
//! multiply + one add per int8 pair); cache sizes from /sys. Every figure is the median
//! of several timed repetitions after an untimed warm-up. Threads are pinned to cores as
//! the sentrons are.
//!
//! The cache is one JSON file under `<cache>/probe/`, named by a hash of the machine's
//! fingerprint (CPU model string, core count, detected features) and checked against
//! the fingerprint inside it: a file from another machine, another format version or a
//! damaged file is ignored (with the reason reported) and the machine probed afresh.

use crate::probe_kernels as pk;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::Instant;

/// Bump when the meaning or layout of [`Probe`] changes: older caches are re-probed.
pub const PROBE_VERSION: u32 = 1;

/// Largest probe cache file read (a real one is a few KB).
const MAX_CACHE_BYTES: u64 = 1 << 20;

/// Why a probe could not be made or saved.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot allocate the {bytes}-byte bandwidth buffer")]
    Alloc { bytes: usize },
    #[error("cannot start probe thread: {0}")]
    Thread(String),
    #[error("cannot write the probe cache {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What identifies a machine for the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub cpu_model: String,
    pub cores: usize,
    /// Detected instruction-set features that change the kernels chosen.
    pub features: Vec<String>,
}

impl Fingerprint {
    pub fn current() -> Fingerprint {
        Fingerprint {
            cpu_model: cpu_model(),
            cores: cores(),
            features: features(),
        }
    }

    /// A stable 64-bit key (FNV-1a of the canonical text) for the cache file name.
    pub fn key(&self) -> String {
        let text = format!(
            "{}\n{}\n{}",
            self.cpu_model,
            self.cores,
            self.features.join(",")
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown {}", std::env::consts::ARCH))
}

fn features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::is_x86_feature_detected!($name) { f.push($name.to_string()); })*
            };
        }
        detect!(
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni"
        );
    }
    f
}

/// One cache level as the OS describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLevel {
    pub level: u32,
    /// "Data", "Instruction" or "Unified".
    pub kind: String,
    pub size_bytes: u64,
    /// CPUs sharing one instance (from shared_cpu_list).
    pub shared_by: usize,
}

/// The ceilings measured with `threads` threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub threads: usize,
    /// Streaming read, GB/s (1e9 bytes).
    pub read_gbs: f64,
    pub f32_gflops: f64,
    pub int8_gops: f64,
}

/// Everything `vtpu probe` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub version: u32,
    pub fingerprint: Fingerprint,
    /// Seconds since the Unix epoch when measured.
    pub measured_unix: u64,
    pub caches: Vec<CacheLevel>,
    /// One row per thread count, 1..=cores.
    pub ceilings: Vec<Ceiling>,
    pub buffer_bytes: u64,
    pub f32_kernel: String,
    pub int8_kernel: String,
    pub reps: usize,
}

impl Probe {
    /// The ceilings for `threads` threads (the last row when more threads than cores).
    pub fn ceiling(&self, threads: usize) -> Option<&Ceiling> {
        self.ceilings
            .iter()
            .find(|c| c.threads == threads)
            .or_else(|| self.ceilings.last())
    }

    /// The largest cache, in bytes (0 when the OS told nothing).
    pub fn llc_bytes(&self) -> u64 {
        self.caches.iter().map(|c| c.size_bytes).max().unwrap_or(0)
    }
}

/// How to probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Bandwidth buffer; None: max(8 x LLC, 256 MiB).
    pub buffer_bytes: Option<usize>,
    /// Timed repetitions per figure (the median is kept).
    pub reps: usize,
    /// Thread counts 1..=max_threads (default: cores).
    pub max_threads: Option<usize>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            buffer_bytes: None,
            reps: 7,
            max_threads: None,
        }
    }
}

/// Cache sizes from /sys/devices/system/cpu/cpu0/cache (empty when absent).
pub fn cache_levels() -> Vec<CacheLevel> {
    let mut out = Vec::new();
    let base = Path::new("/sys/devices/system/cpu/cpu0/cache");
    for i in 0..16 {
        let d = base.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Ok(level) = level.trim().parse::<u32>() else {
            continue;
        };
        let Some(size_bytes) = parse_size(size.trim()) else {
            continue;
        };
        let shared_by = read("shared_cpu_list")
            .map(|s| cpu_list_len(s.trim()))
            .unwrap_or(1);
        out.push(CacheLevel {
            level,
            kind: kind.trim().to_string(),
            size_bytes,
            shared_by,
        });
    }
    out
}

/// "32K", "2048K", "32M", "512" -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// "0-3,8,10-11" -> 7.
pub fn cpu_list_len(s: &str) -> usize {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(p.parse::<usize>().is_ok()),
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Run `work(thread_index)` on `threads` pinned threads at once, `reps + 1` times (the
/// first untimed); returns the median of (sum of units) / (slowest thread's seconds).
fn parallel_rate<F>(threads: usize, reps: usize, work: F) -> Result<f64, ProbeError>
where
    F: Fn(usize) -> u64 + Sync,
{
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut rates = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let barrier = Barrier::new(threads);
        let results: Vec<(u64, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, work) = (&barrier, &work);
                    let core = (!ids.is_empty()).then(|| ids[t % ids.len()]);
                    std::thread::Builder::new()
                        .name(format!("probe-{t}"))
                        .spawn_scoped(s, move || {
                            if let Some(c) = core {
                                core_affinity::set_for_current(c);
                            }
                            barrier.wait();
                            let t0 = Instant::now();
                            let units = work(t);
                            (units, t0.elapsed().as_secs_f64())
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().map_err(|_| "probe thread panicked".to_string()),
                    Err(e) => Err(e.to_string()),
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .map_err(ProbeError::Thread)?;
        if rep == 0 {
            continue;
        }
        let units: u64 = results.iter().map(|r| r.0).sum();
        let secs = results.iter().map(|r| r.1).fold(0.0, f64::max);
        if secs > 0.0 {
            rates.push(units as f64 / secs);
        }
    }
    Ok(median(rates))
}

/// Measure this machine.
pub fn probe_machine(opts: &ProbeOptions) -> Result<Probe, ProbeError> {
    let caches = cache_levels();
    let llc = caches.iter().map(|c| c.size_bytes).max().unwrap_or(0) as usize;
    let bytes = opts
        .buffer_bytes
        .unwrap_or_else(|| (8 * llc).max(256 << 20))
        .max(1 << 20);
    let n = bytes / 8;
    let mut buf: Vec<u64> = Vec::new();
    buf.try_reserve_exact(n)
        .map_err(|_| ProbeError::Alloc { bytes })?;
    // Non-zero contents, written once: every page is faulted in before timing.
    buf.extend((0..n as u64).map(|i| i ^ 0x5555));
    let fisa = pk::float_isa();
    let (iisa, iname) = pk::int8_isa();
    let reps = opts.reps.max(1);
    let max_threads = opts.max_threads.unwrap_or_else(cores).max(1);
    let mut checksum = 0u64;
    let sink = std::sync::atomic::AtomicU64::new(0);
    let mut ceilings = Vec::new();
    for threads in 1..=max_threads {
        let share = n / threads;
        let read_gbs = parallel_rate(threads, reps, |t| {
            let part = &buf[t * share..(t + 1) * share];
            let s = pk::read_sum(part, fisa);
            sink.fetch_add(s, std::sync::atomic::Ordering::Relaxed);
            (part.len() * 8) as u64
        })? / 1e9;
        // ~25 ms per repetition at ~100 GFLOP/s (f32) per thread.
        let iters = 8_000_000u64;
        let f32_gflops = parallel_rate(threads, reps, |_| {
            let (flops, c) = pk::fma_loop(iters, fisa);
            sink.fetch_add(c.to_bits() as u64, std::sync::atomic::Ordering::Relaxed);
            flops
        })? / 1e9;
        let int8_gops = parallel_rate(threads, reps, |_| {
            let (ops, c) = pk::int8_loop(iters, iisa);
            sink.fetch_add(c as u64, std::sync::atomic::Ordering::Relaxed);
            ops
        })? / 1e9;
        ceilings.push(Ceiling {
            threads,
            read_gbs,
            f32_gflops,
            int8_gops,
        });
    }
    checksum ^= sink.load(std::sync::atomic::Ordering::Relaxed);
    std::hint::black_box(checksum);
    Ok(Probe {
        version: PROBE_VERSION,
        fingerprint: Fingerprint::current(),
        measured_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        caches,
        ceilings,
        buffer_bytes: bytes as u64,
        f32_kernel: format!("{} fma", fisa.name()),
        int8_kernel: iname.to_string(),
        reps,
    })
}

/// Where the probe of this machine is cached under `cache_dir` (e.g. ~/.cache/vtpu).
pub fn cache_path(cache_dir: &Path, fp: &Fingerprint) -> PathBuf {
    cache_dir
        .join("probe")
        .join(format!("probe-{}.json", fp.key()))
}

/// Why a cached probe was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheMiss {
    Absent,
    Unreadable(String),
    Corrupt(String),
    OtherMachine,
    OldVersion(u32),
    Forced,
}

impl std::fmt::Display for CacheMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheMiss::Absent => write!(f, "no cached probe"),
            CacheMiss::Unreadable(e) => write!(f, "cached probe unreadable ({e})"),
            CacheMiss::Corrupt(e) => write!(f, "cached probe damaged ({e})"),
            CacheMiss::OtherMachine => write!(f, "cached probe is from another machine"),
            CacheMiss::OldVersion(v) => write!(f, "cached probe has format version {v}"),
            CacheMiss::Forced => write!(f, "probe forced"),
        }
    }
}

/// Read the cached probe at `path` for the machine `fp`.
pub fn read_cache(path: &Path, fp: &Fingerprint) -> Result<Probe, CacheMiss> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CacheMiss::Absent),
        Err(e) => return Err(CacheMiss::Unreadable(e.to_string())),
    };
    let mut text = String::new();
    f.take(MAX_CACHE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CacheMiss::Unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_CACHE_BYTES {
        return Err(CacheMiss::Corrupt(format!(
            "larger than {MAX_CACHE_BYTES} bytes"
        )));
    }
    // Version first, so a future layout is reported as such rather than as damage.
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CacheMiss::Corrupt(e.to_string()))?;
    let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
    if version != PROBE_VERSION {
        return Err(CacheMiss::OldVersion(version));
    }
    let p: Probe = serde_json::from_value(v).map_err(|e| CacheMiss::Corrupt(e.to_string()))?;
    if &p.fingerprint != fp {
        return Err(CacheMiss::OtherMachine);
    }
    let sane = |x: f64| x.is_finite() && x > 0.0;
    if p.ceilings.is_empty()
        || p.ceilings
            .iter()
            .any(|c| !(sane(c.read_gbs) && sane(c.f32_gflops) && sane(c.int8_gops)))
    {
        return Err(CacheMiss::Corrupt(
            "missing or non-positive ceilings".into(),
        ));
    }
    Ok(p)
}

/// Write `p` to `path` (temp file + rename, so a reader never sees half a file).
pub fn write_cache(path: &Path, p: &Probe) -> Result<(), ProbeError> {
    let err = |source| ProbeError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let text = serde_json::to_string_pretty(p).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Where a probe came from.
#[derive(Clone, Debug)]
pub enum ProbeSource {
    Cached(PathBuf),
    /// Measured now: why the cache was not used, and whether saving it failed.
    Fresh {
        path: PathBuf,
        miss: CacheMiss,
        save_error: Option<String>,
    },
}

/// The cached probe of this machine, or a fresh one (saved to the cache; a failure to
/// save is reported, not fatal).
pub fn load_or_probe(
    cache_dir: &Path,
    opts: &ProbeOptions,
    force: bool,
) -> Result<(Probe, ProbeSource), ProbeError> {
    let fp = Fingerprint::current();
    let path = cache_path(cache_dir, &fp);
    let miss = if force {
        CacheMiss::Forced
    } else {
        match read_cache(&path, &fp) {
            Ok(p) => return Ok((p, ProbeSource::Cached(path))),
            Err(m) => m,
        }
    };
    let p = probe_machine(opts)?;
    let save_error = write_cache(&path, &p).err().map(|e| e.to_string());
    Ok((
        p,
        ProbeSource::Fresh {
            path,
            miss,
            save_error,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Probe {
        Probe {
            version: PROBE_VERSION,
            fingerprint: Fingerprint::current(),
            measured_unix: 1,
            caches: vec![],
            ceilings: vec![Ceiling {
                threads: 1,
                read_gbs: 20.0,
                f32_gflops: 100.0,
                int8_gops: 400.0,
            }],
            buffer_bytes: 1 << 20,
            f32_kernel: "x".into(),
            int8_kernel: "y".into(),
            reps: 1,
        }
    }

    #[test]
    fn sizes_and_cpu_lists_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size("x1K"), None);
        assert_eq!(cpu_list_len("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len("3-1"), 0);
    }

    #[test]
    fn a_cache_round_trips_and_anything_else_is_a_miss_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("vtpu-probe-test-{}", std::process::id()));
        let fp = Fingerprint::current();
        let path = cache_path(&dir, &fp);
        assert_eq!(read_cache(&path, &fp), Err(CacheMiss::Absent));
        let p = sample();
        write_cache(&path, &p).unwrap();
        assert_eq!(read_cache(&path, &fp).unwrap(), p);
        // Another machine's file under this name.
        let mut other = p.clone();
        other.fingerprint.cpu_model = "Some Other CPU".into();
        write_cache(&path, &other).unwrap();
        assert_eq!(read_cache(&path, &fp), Err(CacheMiss::OtherMachine));
        // Damaged files.
        for bad in ["", "{", "[1,2]", "{\"version\":1}", "\u{0}\u{1}garbage"] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    read_cache(&path, &fp),
                    Err(CacheMiss::Corrupt(_) | CacheMiss::OldVersion(_))
                ),
                "{bad:?}"
            );
        }
        let mut zero = p.clone();
        zero.ceilings[0].read_gbs = 0.0;
        write_cache(&path, &zero).unwrap();
        assert!(matches!(read_cache(&path, &fp), Err(CacheMiss::Corrupt(_))));
        let mut old = serde_json::to_value(&p).unwrap();
        old["version"] = 0.into();
        std::fs::write(&path, old.to_string()).unwrap();
        assert_eq!(read_cache(&path, &fp), Err(CacheMiss::OldVersion(0)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn different_machines_get_different_keys() {
        let a = Fingerprint::current();
        let mut b = a.clone();
        b.cores += 1;
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), Fingerprint::current().key());
    }

    #[test]
    fn a_small_probe_measures_positive_ceilings() {
        let p = probe_machine(&ProbeOptions {
            buffer_bytes: Some(8 << 20),
            reps: 1,
            max_threads: Some(1),
        })
        .unwrap();
        let c = &p.ceilings[0];
        assert!(
            c.read_gbs > 0.1 && c.f32_gflops > 0.1 && c.int8_gops > 0.1,
            "{c:?}"
        );
    }
}
