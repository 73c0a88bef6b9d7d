//! Timing and profiling of one layer on the vTPU (what `vtpu bench-layer` and
//! `vtpu profile-layer` print). Host figures only; the virtual counters of the runs are
//! reported next to them, labelled as such.
//!
//! A case is decode of one token over a KV cache already holding `kv_len` positions (the
//! token attends to `kv_len + 1`), or prefill of `T` tokens at positions `0..T`. Each
//! case: `warmup` calls, then the median (and minimum) of `runs` timed calls, each call
//! timed from writing the input to reading the output back. Before any timing the
//! layer is checked against the f64 reference (an 8-token prefill and one decode step).

use crate::config::LayerConfig;
use crate::layer_runner::{LayerError, LayerOptions, LayerRunner};
use crate::reference::{layer_forward_f64, KvCacheF64};
use crate::weights::{LayerWeights, SplitMix64};
use std::time::Instant;
use vtpu_isa::Pipe;
use vtpu_runtime::{Counters, OpProfile};

/// The three benchmark shapes, by the names the baseline script uses.
pub fn shape(name: &str) -> Option<LayerConfig> {
    match name {
        "smollm2_135m" | "smollm2" => Some(LayerConfig::smollm2_135m()),
        "qwen25_05b" | "qwen25" => Some(LayerConfig::qwen25_05b()),
        "qwen3_style" | "qwen3" => Some(LayerConfig::qwen3_style()),
        _ => None,
    }
}

/// The canonical shape names.
pub const SHAPES: [&str; 3] = ["smollm2_135m", "qwen25_05b", "qwen3_style"];

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One token at position `kv_len`.
    Decode { kv_len: usize },
    /// `tokens` tokens at positions `0..tokens`.
    Prefill { tokens: usize },
}

impl Mode {
    pub fn tokens(self) -> usize {
        match self {
            Mode::Decode { .. } => 1,
            Mode::Prefill { tokens } => tokens,
        }
    }
    pub fn start(self) -> usize {
        match self {
            Mode::Decode { kv_len } => kv_len,
            Mode::Prefill { .. } => 0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Decode { .. } => "decode",
            Mode::Prefill { .. } => "prefill",
        }
    }
}

/// What one case measured.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub mode: Mode,
    /// Host: median and minimum wall milliseconds per call.
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
    /// Weight bytes one call reads and flops it does (FMA = 2), from the shapes.
    pub weight_bytes: u64,
    pub flops: u64,
    /// Virtual counters of the last timed call, summed over sentrons.
    pub counters: Counters,
    /// Copies of the layer the calls cycled through: 1 is warm (the weights stay in the
    /// caches as far as they fit), more is [`time_case_cold`].
    pub copies: usize,
}

impl CaseResult {
    /// Host GB/s of weights + KV cache read per call at the median.
    pub fn gb_per_s(&self, cfg: &LayerConfig) -> f64 {
        let kv = 2 * cfg.kv_dim() * (self.mode.start() + self.mode.tokens()) * 4;
        (self.weight_bytes as f64 + kv as f64) / (self.median_ms * 1e-3) / 1e9
    }
    /// Host GFLOP/s at the median.
    pub fn gflop_per_s(&self) -> f64 {
        self.flops as f64 / (self.median_ms * 1e-3) / 1e9
    }
}

/// (weight bytes, flops) of one call: `t` tokens attending to `s` positions; the same
/// count as the baseline script's `layer_cost`.
pub fn layer_cost(cfg: &LayerConfig, elem_bytes: usize, t: usize, s: usize) -> (u64, u64) {
    let (d, q, kv, f) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
    let params = q * d + 2 * kv * d + d * q + 3 * f * d;
    let attn = 2 * 2 * t * cfg.n_heads * cfg.head_dim * s;
    ((params * elem_bytes) as u64, (2 * t * params + attn) as u64)
}

/// The derived tolerance of a layer output against the f64 reference, relative to
/// max|reference| (the derivation is in `tests/common/mod.rs`): `u` times the summed
/// reduction lengths of the layer's stages.
pub fn tolerance(cfg: &LayerConfig, kv_len: usize) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let k = 4 * cfg.dim + cfg.head_dim + kv_len + cfg.q_dim() + cfg.ffn_dim + 16;
    u * k as f64
}

/// Matmul stages an activation error passes through on its way to the layer output:
/// q/k/v, the attention output projection, gate/up, down.
const MATMUL_STAGES: f64 = 4.0;

/// The tolerance of a layer whose bf16 weights multiply bf16-rounded activations
/// (`vtpu_kernels::Kernels::with_bf16_products`), relative to max|reference|: on top of
/// [`tolerance`], each of the [`MATMUL_STAGES`] matmul stages rounds its inputs to bf16,
/// a relative error of at most `U_BF16 = 2^-8` per product. With products of random
/// signs the errors add like a random walk, so a stage's output moves by about
/// `U_BF16 / sqrt(3)` of its own size (and never more than `U_BF16` times the sum of
/// the absolute products); we allow `2 U_BF16` per stage, summed over the stages. This
/// is far above f32 rounding (an f32 layer is held to [`tolerance`], ~1e-4) and far
/// below what a wrong product does (an error of order 1).
pub fn tolerance_bf16_products(cfg: &LayerConfig, kv_len: usize) -> f64 {
    tolerance(cfg, kv_len) + 2.0 * vtpu_kernels::tolerance::U_BF16 * MATMUL_STAGES
}

/// Whether a runner built now (from the process-wide kernel defaults, as
/// [`bench_runner`] builds them) with `dtype` weights multiplies bf16 products.
pub fn bf16_products_active(dtype: vtpu_phext::DType) -> bool {
    dtype == vtpu_phext::DType::BF16 && vtpu_kernels::Kernels::current().bf16_products_active()
}

/// Runs an 8-token prefill and one decode step on `runner` (which must be fresh) and on
/// the f64 reference with the same (dtype-rounded) weights; returns the worst error
/// relative to max|reference|, or an error if it exceeds [`tolerance`] (or
/// [`tolerance_bf16_products`] where [`bf16_products_active`]). The runner is reset
/// afterwards.
pub fn validate_against_reference(
    runner: &mut LayerRunner,
    cfg: &LayerConfig,
    w: &LayerWeights,
) -> Result<f64, LayerError> {
    let w = &crate::layer_pages::rounded_to(w, runner.weight_dtype());
    let mut rng = SplitMix64::new(99);
    let mut cache = KvCacheF64::new(cfg)?;
    let mut worst = 0.0f64;
    runner.reset();
    let mut pos = 0;
    for t in [8usize, 1] {
        let x: Vec<f32> = (0..t * cfg.dim).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let (got, _) = runner.forward(&x, pos)?;
        let want = layer_forward_f64(cfg, w, &x, pos, &mut cache)
            .map_err(|e| LayerError::Reference(e.to_string()))?;
        pos += t;
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (f64::from(g) - w).abs())
            .fold(0.0, f64::max);
        worst = worst.max(err / scale.max(f64::MIN_POSITIVE));
    }
    runner.reset();
    let tol = if bf16_products_active(runner.weight_dtype()) {
        tolerance_bf16_products(cfg, 9)
    } else {
        tolerance(cfg, 9)
    };
    if worst.is_nan() || worst > tol {
        return Err(LayerError::Mismatch {
            error: worst,
            tolerance: tol,
        });
    }
    Ok(worst)
}

/// Time `mode` on `runner`: `warmup` untimed calls, then `runs` timed ones.
pub fn time_case(
    runner: &mut LayerRunner,
    cfg: &LayerConfig,
    mode: Mode,
    warmup: usize,
    runs: usize,
) -> Result<CaseResult, LayerError> {
    time_cycle(std::slice::from_mut(runner), cfg, mode, warmup, runs)
}

/// Size in bytes of the largest CPU cache that sysfs reports (the last-level cache),
/// or `None` where it is not readable.
pub fn llc_bytes() -> Option<u64> {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut best = None;
    for e in std::fs::read_dir(base).ok()?.flatten() {
        let Ok(txt) = std::fs::read_to_string(e.path().join("size")) else {
            continue;
        };
        let txt = txt.trim();
        let (digits, mult) = match txt.as_bytes().last() {
            Some(b'K') => (&txt[..txt.len() - 1], 1u64 << 10),
            Some(b'M') => (&txt[..txt.len() - 1], 1 << 20),
            Some(b'G') => (&txt[..txt.len() - 1], 1 << 30),
            _ => (txt, 1),
        };
        if let Ok(v) = digits.parse::<u64>() {
            best = best.max(v.checked_mul(mult));
        }
    }
    best
}

/// The last-level cache assumed when sysfs does not say: 32 MiB (both CPUs this project
/// has met: a Zen 4 CCD's L3, and more than a 2-core Sapphire Rapids slice gets).
pub const DEFAULT_LLC_BYTES: u64 = 32 << 20;

/// Copies of a layer of `weight_bytes` to cycle through so that the copies together are
/// more than twice the last-level cache (`llc`): by the time a copy comes round again,
/// the others have pushed its weights out, so every call reads them from DRAM. At least 2.
pub fn cold_copies(weight_bytes: u64, llc: u64) -> usize {
    let need = (2 * llc).div_ceil(weight_bytes.max(1)) + 1;
    usize::try_from(need).unwrap_or(usize::MAX).max(2)
}

/// Time `mode` cycling through `runners` (copies of one layer with different weights,
/// see [`cold_copies`]): call `i` runs copy `i mod len`, so each call finds its weights
/// evicted from the caches by the others. Same protocol as [`time_case`].
pub fn time_case_cold(
    runners: &mut [LayerRunner],
    cfg: &LayerConfig,
    mode: Mode,
    warmup: usize,
    runs: usize,
) -> Result<CaseResult, LayerError> {
    time_cycle(runners, cfg, mode, warmup, runs)
}

fn time_cycle(
    runners: &mut [LayerRunner],
    cfg: &LayerConfig,
    mode: Mode,
    warmup: usize,
    runs: usize,
) -> Result<CaseResult, LayerError> {
    let copies = runners.len();
    let Some(first) = runners.first() else {
        return Err(LayerError::ZeroCapacity {
            what: "layer copies",
        });
    };
    let elem = runner_weight_bytes(first);
    let (t, start) = (mode.tokens(), mode.start());
    let mut rng = SplitMix64::new(7);
    let x: Vec<f32> = (0..t * cfg.dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut out = vec![0.0f32; x.len()];
    let mut times = Vec::with_capacity(runs);
    let mut last = Vec::new();
    for i in 0..warmup + runs.max(1) {
        let runner = &mut runners[i % copies];
        runner.set_kv_len(start)?;
        let t0 = Instant::now();
        let rep = runner.forward_into(&x, start, &mut out)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
            last = rep.counters;
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let (weight_bytes, flops) = layer_cost(cfg, elem, t, start + t);
    Ok(CaseResult {
        mode,
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        runs: times.len(),
        weight_bytes,
        flops,
        counters: Counters::total(&last),
        copies,
    })
}

fn runner_weight_bytes(r: &LayerRunner) -> usize {
    match r.weight_dtype() {
        vtpu_phext::DType::F16 | vtpu_phext::DType::BF16 => 2,
        _ => 4,
    }
}

/// Build a layer of `cfg` with random weights in `opts.weight_dtype`.
pub fn bench_runner(
    cfg: &LayerConfig,
    opts: &LayerOptions,
    seed: u64,
) -> Result<(LayerRunner, LayerWeights), LayerError> {
    let w = LayerWeights::random(cfg, seed)?;
    let r = LayerRunner::new(cfg, &w, opts)?;
    Ok((r, w))
}

fn rate(c: &Counters) -> String {
    c.ppt_hit_rate()
        .map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r))
}

/// The per-opcode profile of `calls` calls of `mode`, as text: per-op host time, share,
/// GB/s and GFLOP/s; the virtual counters; where the host time went.
pub fn profile_text(
    runner: &mut LayerRunner,
    cfg: &LayerConfig,
    mode: Mode,
    calls: usize,
) -> Result<String, LayerError> {
    use std::fmt::Write;
    let calls = calls.max(1);
    let (t, start) = (mode.tokens(), mode.start());
    let mut rng = SplitMix64::new(3);
    let x: Vec<f32> = (0..t * cfg.dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut out = vec![0.0f32; x.len()];
    // One unprofiled warm-up call (buffers, caches), then the profiled ones.
    runner.set_kv_len(start)?;
    let cold = Counters::total(&runner.forward_into(&x, start, &mut out)?.counters);
    runner.set_profile(true);
    let mut prof = OpProfile::new();
    let mut totals: Vec<Counters> = Vec::new();
    let mut wall_ns = 0u64;
    for _ in 0..calls {
        runner.set_kv_len(start)?;
        let rep = runner.forward_into(&x, start, &mut out)?;
        wall_ns += rep.host_wall_ns;
        if let Some(p) = &rep.profile {
            prof.merge(p);
        }
        if totals.is_empty() {
            totals = rep.counters.clone();
        } else {
            for (a, b) in totals.iter_mut().zip(&rep.counters) {
                a.host_ns += b.host_ns;
                a.host_blocked_ns += b.host_blocked_ns;
            }
        }
    }
    runner.set_profile(false);
    let n = calls as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "layer: D {} H {} KV {} Hd {} F {}; {} of {} token(s) at position {}; {} sentron(s); {} call(s) profiled",
        cfg.dim,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        cfg.ffn_dim,
        mode.name(),
        t,
        start,
        totals.len(),
        calls
    );
    let _ = writeln!(
        s,
        "\nhost, per call, summed over sentrons (profiling adds ~30 ns per slot):"
    );
    let _ = writeln!(
        s,
        "  {:<10} {:>7} {:>10} {:>7} {:>9} {:>10}",
        "op", "count", "us", "share", "GB/s", "GFLOP/s"
    );
    let op_ns = prof.op_ns().max(1) as f64;
    for (code, st) in prof.rows() {
        let ns = st.ns.max(1) as f64;
        let _ = writeln!(
            s,
            "  {:<10} {:>7.1} {:>10.2} {:>6.1}% {:>9.2} {:>10.2}",
            code.name(),
            st.count as f64 / n,
            st.ns as f64 / n / 1e3,
            100.0 * st.ns as f64 / op_ns,
            st.bytes as f64 / ns,
            st.flops as f64 / ns
        );
    }
    let c = Counters::total(&totals);
    let host_ns: u64 = totals.iter().map(|c| c.host_ns).sum();
    let blocked: u64 = totals.iter().map(|c| c.host_blocked_ns).sum();
    let (d_ns, s_ns, c_ns) = (
        prof.pipe_ns(Pipe::D),
        prof.pipe_ns(Pipe::S),
        prof.pipe_ns(Pipe::C),
    );
    let other = host_ns.saturating_sub(d_ns + s_ns + c_ns);
    let pct = |v: u64| 100.0 * v as f64 / host_ns.max(1) as f64;
    let _ = writeln!(s, "\nhost time of the sentrons' streams, per call ({:.1} us summed over sentrons; run wall {:.1} us):", host_ns as f64 / n / 1e3, wall_ns as f64 / n / 1e3);
    let _ = writeln!(
        s,
        "  D-pipe tile kernels           {:>8.1} us  {:>5.1}%",
        d_ns as f64 / n / 1e3,
        pct(d_ns)
    );
    let _ = writeln!(
        s,
        "  S-pipe page ops (gather...)   {:>8.1} us  {:>5.1}%",
        s_ns as f64 / n / 1e3,
        pct(s_ns)
    );
    let _ = writeln!(
        s,
        "  C-pipe ops (of which blocked {:.1} us) {:>8.1} us  {:>5.1}%",
        blocked as f64 / n / 1e3,
        c_ns as f64 / n / 1e3,
        pct(c_ns)
    );
    let _ = writeln!(
        s,
        "  dispatch (word loop, decode, counting, timers) {:>8.1} us  {:>5.1}%",
        other as f64 / n / 1e3,
        pct(other)
    );
    for c in &totals {
        let _ = writeln!(
            s,
            "  sentron {}: stream {:.1} us, of which blocked in the C pipe {:.1} us",
            c.sentron,
            c.host_ns as f64 / n / 1e3,
            c.host_blocked_ns as f64 / n / 1e3
        );
    }
    let _ = writeln!(s, "\nvirtual counters, one call, all sentrons:");
    let _ = writeln!(
        s,
        "  SIWs {}  ops D/S/C {}/{}/{}  ops/SIW (ops/cycle) {:.2}  utilization {:.1}%",
        c.siws,
        c.ops[0],
        c.ops[1],
        c.ops[2],
        c.ops_per_siw(),
        100.0 * c.utilization()
    );
    let _ = writeln!(
        s,
        "  PPT (translation cache) lookups {}  hits {}  hit rate {} warm (a session keeps its caches between calls); first call of this runner: {}",
        c.ppt_lookups,
        c.ppt_hits,
        rate(&c),
        rate(&cold)
    );
    let _ = writeln!(
        s,
        "  bytes gathered {}  copied {}  scattered {}  flops {}",
        c.bytes_gathered, c.bytes_copied, c.bytes_scattered, c.flops
    );
    Ok(s)
}
