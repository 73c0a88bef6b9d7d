//! Counters for `GET /metrics` (Prometheus text format), shared lock-free between the
//! engine thread (which counts) and the handlers (which read and count requests).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Metrics {
    /// HTTP completion requests received / rejected before reaching the engine.
    pub http_requests: AtomicU64,
    pub http_rejected: AtomicU64,
    /// Requests the engine started, finished, failed, and whose client went away.
    pub requests_started: AtomicU64,
    pub requests_done: AtomicU64,
    pub errors: AtomicU64,
    pub cancelled: AtomicU64,
    /// Prompt tokens computed, and taken from the prompt cache.
    pub prompt_tokens: AtomicU64,
    pub prompt_tokens_cached: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Host time of prefills and of decode steps.
    pub prefill_ns: AtomicU64,
    pub decode_ns: AtomicU64,
    pub decode_steps: AtomicU64,
    /// Gauges, written by the engine after each step.
    pub active: AtomicU64,
    pub kv_pages_in_use: AtomicU64,
    pub kv_positions: AtomicU64,
    pub cache_entries: AtomicU64,
    pub cache_bytes: AtomicU64,
    /// PPT (translation cache) lookups and hits of the sentrons.
    pub ppt_lookups: AtomicU64,
    pub ppt_hits: AtomicU64,
}

impl Metrics {
    /// The Prometheus exposition text; `queue` is the current queue length.
    pub fn render(&self, queue: usize, loaded: bool) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut line = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(s, "# HELP vtpu_{name} {help}");
            let _ = writeln!(s, "# TYPE vtpu_{name} {kind}");
            let _ = writeln!(s, "vtpu_{name} {v}");
        };
        let gen = g(&self.generated_tokens);
        let decode_s = g(&self.decode_ns) as f64 / 1e9;
        let prefill_s = g(&self.prefill_ns) as f64 / 1e9;
        let lookups = g(&self.ppt_lookups);
        line(
            "model_loaded",
            "gauge",
            "1 once the model is loaded.",
            loaded as u8 as f64,
        );
        line(
            "http_requests_total",
            "counter",
            "Completion requests received.",
            g(&self.http_requests) as f64,
        );
        line(
            "http_requests_rejected_total",
            "counter",
            "Completion requests answered with an error before generation.",
            g(&self.http_rejected) as f64,
        );
        line(
            "requests_started_total",
            "counter",
            "Requests that entered a slot.",
            g(&self.requests_started) as f64,
        );
        line(
            "requests_finished_total",
            "counter",
            "Requests that finished generating.",
            g(&self.requests_done) as f64,
        );
        line(
            "requests_failed_total",
            "counter",
            "Requests that failed in the engine.",
            g(&self.errors) as f64,
        );
        line(
            "requests_cancelled_total",
            "counter",
            "Requests whose client disconnected.",
            g(&self.cancelled) as f64,
        );
        line(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens computed (prefilled).",
            g(&self.prompt_tokens) as f64,
        );
        line(
            "prompt_tokens_cached_total",
            "counter",
            "Prompt tokens taken from the prompt cache.",
            g(&self.prompt_tokens_cached) as f64,
        );
        line(
            "generated_tokens_total",
            "counter",
            "Tokens generated.",
            gen as f64,
        );
        line(
            "prefill_seconds_total",
            "counter",
            "Host time spent prefilling prompts.",
            prefill_s,
        );
        line(
            "decode_seconds_total",
            "counter",
            "Host time spent in decode steps.",
            decode_s,
        );
        line(
            "decode_steps_total",
            "counter",
            "Decode steps (one per batch of active sequences).",
            g(&self.decode_steps) as f64,
        );
        line(
            "generated_tokens_per_second",
            "gauge",
            "Generated tokens per second of decode time (host), since start.",
            if decode_s > 0.0 {
                gen as f64 / decode_s
            } else {
                0.0
            },
        );
        line(
            "prompt_tokens_per_second",
            "gauge",
            "Prompt tokens computed per second of prefill time (host), since start.",
            if prefill_s > 0.0 {
                g(&self.prompt_tokens) as f64 / prefill_s
            } else {
                0.0
            },
        );
        line(
            "queue_length",
            "gauge",
            "Requests waiting for a slot.",
            queue as f64,
        );
        line(
            "active_sequences",
            "gauge",
            "Sequences being generated.",
            g(&self.active) as f64,
        );
        line(
            "kv_pages_in_use",
            "gauge",
            "KV cache pages of slots that hold a sequence.",
            g(&self.kv_pages_in_use) as f64,
        );
        line(
            "kv_positions_in_use",
            "gauge",
            "KV positions held by slots.",
            g(&self.kv_positions) as f64,
        );
        line(
            "prompt_cache_entries",
            "gauge",
            "Sequences in the prompt cache store (host memory).",
            g(&self.cache_entries) as f64,
        );
        line(
            "prompt_cache_bytes",
            "gauge",
            "Bytes of the prompt cache store.",
            g(&self.cache_bytes) as f64,
        );
        line(
            "ppt_lookups_total",
            "counter",
            "PPT (per-sentron translation cache) lookups (virtual).",
            lookups as f64,
        );
        line(
            "ppt_hits_total",
            "counter",
            "PPT (per-sentron translation cache) hits (virtual).",
            g(&self.ppt_hits) as f64,
        );
        line(
            "ppt_hit_rate",
            "gauge",
            "PPT (translation cache) hit rate since start (virtual).",
            if lookups > 0 {
                g(&self.ppt_hits) as f64 / lookups as f64
            } else {
                0.0
            },
        );
        s
    }
}
