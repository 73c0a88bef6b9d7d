//! Token sampling: one row of logits `[V]` in, one token id out.
//!
//! The chain and its defaults follow llama.cpp's common sampler (`common/sampling.cpp`
//! building on `src/llama-sampling.cpp`), reduced to the stages llama.cpp enables by
//! default:
//!
//! ```text
//! repeat penalty -> top-k -> top-p -> min-p -> temperature -> softmax -> draw
//! ```
//!
//! Semantics worth knowing, each as llama.cpp has it unless marked "(ours)":
//! - The repeat penalty touches each token seen in the last `repeat_last_n` accepted
//!   tokens once, however often it was seen: a positive logit is divided by the
//!   penalty, a non-positive one multiplied (dividing a negative logit would make the
//!   token *more* likely).
//! - top-p and min-p look at the distribution *before* temperature: min-p keeps the
//!   tokens whose temperature-1 probability is at least `min_p` times the largest one
//!   (`logit >= max_logit + ln(min_p)`); top-p keeps the shortest prefix, by falling
//!   probability, whose mass reaches `top_p` (always at least one token).
//! - `temperature == 0` is greedy: the argmax of the penalized logits. The filters
//!   never remove the argmax, so they are skipped. (ours) Ties go to the lowest token
//!   id, everywhere: in greedy, in top-k's cut and in the order of the draw. llama.cpp
//!   leaves ties to its sort.
//! - (ours) NaN logits are treated as `-inf`: never drawn. A row with nothing but NaN
//!   and `-inf` is an error, not a silent token 0. `+inf` logits share all the mass
//!   equally (the limit of softmax), so they neither poison the sum nor get lost.
//! - (ours) The random stream is SplitMix64 seeded from `seed` (llama.cpp uses
//!   mt19937 and draws a random seed by default); one `f64` per draw, and none when a
//!   single candidate is left, as llama.cpp does.
//!
//! Cost: the candidate and history buffers live in the [`Sampler`] and are reused, so
//! after the first call `sample` does not allocate. Greedy is one pass over the row.
//! top-k uses `select_nth_unstable` (linear) on an integer rank key and sorts only the
//! k survivors; top-p without top-k first ranks the best [`TOP_P_FIRST_RANK`]
//! candidates and sorts the rest only if their mass falls short (a high-entropy row
//! then costs a full sort, milliseconds at 152k). `bench_ns_per_sample_152k_vocab` in
//! `tests/sampler.rs` measures it.

use crate::weights::SplitMix64;
use std::cmp::Ordering;
use std::collections::VecDeque;
use thiserror::Error;

/// Largest accepted `repeat_last_n`. llama.cpp's largest practical value is the
/// context length (`-1`); a million covers any context in use and bounds the history
/// buffers a config can ask for.
pub const MAX_REPEAT_LAST_N: usize = 1 << 20;

/// Seed used by [`SamplerConfig::default`]. llama.cpp draws a random seed by default;
/// a fixed one keeps runs reproducible unless the caller asks otherwise.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// How many candidates top-p ranks before it knows whether it needs them all. Real
/// logits put nearly all the mass in a few dozen tokens, so 256 almost always suffices
/// and a full sort of a 152k vocabulary is avoided (llama.cpp makes the same bet).
pub const TOP_P_FIRST_RANK: usize = 256;

/// Sampling parameters. [`Default`] gives llama.cpp's defaults (`common.h`,
/// `common_params_sampling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Divides the logits before the softmax; higher is more random. `0` = greedy.
    /// Must be finite and `>= 0`. Default 0.8.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` = off. Default 40.
    pub top_k: usize,
    /// Keep the most likely tokens whose mass reaches `top_p`; `1.0` = off. Must be in
    /// `(0, 1]`. Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; `0` = off. Must
    /// be in `[0, 1]`. Default 0.05.
    pub min_p: f32,
    /// Penalty for tokens among the last `repeat_last_n` accepted ones; `1.0` = off.
    /// Must be finite and `> 0`. Default 1.0 (off).
    pub repeat_penalty: f32,
    /// How many accepted tokens the penalty looks back; `0` = off. At most
    /// [`MAX_REPEAT_LAST_N`]. Default 64.
    pub repeat_last_n: usize,
    /// Seed of the random stream. Default [`DEFAULT_SEED`].
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: temperature 0, every filter and the penalty off.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: DEFAULT_SEED,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |field: &'static str, value: String, rule: &'static str| {
            Err(SamplerError::InvalidConfig { field, value, rule })
        };
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return bad(
                "temperature",
                t.to_string(),
                "a finite number >= 0 (0 = greedy)",
            );
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return bad("top_p", p.to_string(), "in (0, 1] (1 = off)");
        }
        let m = self.min_p;
        if !(0.0..=1.0).contains(&m) {
            return bad("min_p", m.to_string(), "in [0, 1] (0 = off)");
        }
        let r = self.repeat_penalty;
        if !r.is_finite() || r <= 0.0 {
            return bad(
                "repeat_penalty",
                r.to_string(),
                "a finite number > 0 (1 = off)",
            );
        }
        if self.repeat_last_n > MAX_REPEAT_LAST_N {
            return bad(
                "repeat_last_n",
                self.repeat_last_n.to_string(),
                "at most MAX_REPEAT_LAST_N = 1048576 (0 = off)",
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SamplerError {
    #[error("sampler config: {field} = {value} is invalid: it must be {rule}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("sampler: the logits row is empty (vocabulary size 0)")]
    EmptyLogits,
    #[error("sampler: the logits row has {len} entries, more than token ids (u32) can name")]
    VocabTooLarge { len: usize },
    #[error(
        "sampler: all {len} logits are NaN or -inf after the repeat penalty; no token can be drawn"
    )]
    NoCandidates { len: usize },
}

/// One token still in the running.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Rank key, ascending = better: larger logit first, then lower id. The logit's bits
/// are mapped to a u32 that orders like `f32::total_cmp` (flip all bits of negatives,
/// set the sign bit of positives), then inverted so larger logits come first. One
/// integer compare per comparison is what makes selection over a 152k row cheap, and
/// the order is total, so every sort and selection here is deterministic.
fn rank_key(c: &Candidate) -> u64 {
    let bits = c.logit.to_bits();
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(!ordered) << 32) | u64::from(c.id)
}

fn by_rank(a: &Candidate, b: &Candidate) -> Ordering {
    rank_key(a).cmp(&rank_key(b))
}

/// Unnormalized softmax weight of `logit` given the largest logit `max`. With
/// `max == +inf` the limit of softmax splits the mass evenly over the `+inf` logits.
fn weight(logit: f32, max: f32) -> f64 {
    if max == f32::INFINITY {
        if logit == f32::INFINITY {
            1.0
        } else {
            0.0
        }
    } else {
        f64::from((logit - max).exp())
    }
}

fn max_logit(c: &[Candidate]) -> f32 {
    c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.logit))
}

/// The repeat penalty of one logit, as llama.cpp applies it.
fn penalize(logit: f32, penalty: f32) -> f32 {
    if logit <= 0.0 {
        logit * penalty
    } else {
        logit / penalty
    }
}

/// A configured sampler with its own random stream, penalty history and scratch
/// buffers. One per generation stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: SplitMix64,
    /// The last `repeat_last_n` accepted tokens, oldest first. [<= repeat_last_n]
    history: VecDeque<u32>,
    /// Scratch: the distinct ids of `history`, ascending. [<= repeat_last_n]
    penalized: Vec<u32>,
    /// Scratch: the tokens still in the running. [<= V]
    candidates: Vec<Candidate>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self, SamplerError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            rng: SplitMix64::new(cfg.seed),
            // Grows as tokens are accepted, up to repeat_last_n, so a large window
            // costs memory only once it fills.
            history: VecDeque::new(),
            penalized: Vec::new(),
            candidates: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Forgets the penalty history and restarts the random stream from the seed, so
    /// the next draws repeat those of a fresh sampler.
    pub fn reset(&mut self) {
        self.history.clear();
        self.rng = SplitMix64::new(self.cfg.seed);
    }

    /// Records a token of the sequence (prompt or generated) for the repeat penalty.
    /// Ids outside the vocabulary of a later `sample` call are kept but match nothing.
    pub fn accept(&mut self, token: u32) {
        let n = self.cfg.repeat_last_n;
        if n == 0 {
            return;
        }
        if self.history.len() >= n {
            self.history.pop_front();
        }
        self.history.push_back(token);
    }

    /// Draws the next token from `logits` (`[V]`, one per token id). Does not accept
    /// it: call [`Sampler::accept`] with the token the caller keeps.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        if logits.is_empty() {
            return Err(SamplerError::EmptyLogits);
        }
        if u32::try_from(logits.len()).is_err() {
            return Err(SamplerError::VocabTooLarge { len: logits.len() });
        }
        self.refresh_penalized();
        if self.cfg.temperature <= 0.0 {
            return self
                .argmax(logits)
                .ok_or(SamplerError::NoCandidates { len: logits.len() });
        }
        self.collect(logits);
        if self.candidates.is_empty() {
            return Err(SamplerError::NoCandidates { len: logits.len() });
        }
        let sorted = self.top_k();
        let sorted = self.top_p(sorted);
        self.min_p(sorted);
        let t = self.cfg.temperature;
        if t != 1.0 {
            for c in &mut self.candidates {
                c.logit /= t;
            }
        }
        Ok(self.draw())
    }

    /// Fills `penalized` with the distinct ids of the history, ascending; empty when the
    /// penalty is off.
    fn refresh_penalized(&mut self) {
        self.penalized.clear();
        if self.cfg.repeat_penalty != 1.0 {
            self.penalized.extend(self.history.iter().copied());
            self.penalized.sort_unstable();
            self.penalized.dedup();
        }
    }

    /// Fills `candidates` in id order with the penalized logits, dropping NaN and
    /// `-inf` (tokens that can never be drawn).
    fn collect(&mut self, logits: &[f32]) {
        let penalty = self.cfg.repeat_penalty;
        let pen = &self.penalized;
        let c = &mut self.candidates;
        c.clear();
        c.reserve(logits.len());
        // Walk the ascending penalized ids alongside the row: one comparison per token
        // instead of a set lookup. Ids >= V are never reached and so ignored.
        let mut next = 0;
        for (id, &raw) in (0u32..).zip(logits) {
            let mut logit = raw;
            if next < pen.len() && pen[next] == id {
                next += 1;
                logit = penalize(logit, penalty);
            }
            // False for NaN and -inf.
            if logit > f32::NEG_INFINITY {
                c.push(Candidate { id, logit });
            }
        }
    }

    /// Greedy: the largest penalized logit, the lowest id among ties; `None` if every
    /// logit is NaN or `-inf`. Reads the row directly (no candidate list): greedy costs
    /// one pass.
    fn argmax(&self, logits: &[f32]) -> Option<u32> {
        let penalty = self.cfg.repeat_penalty;
        let pen = &self.penalized;
        let mut best: Option<u32> = None;
        let mut best_logit = f32::NEG_INFINITY;
        let mut next = 0;
        for (id, &raw) in (0u32..).zip(logits) {
            let mut logit = raw;
            if next < pen.len() && pen[next] == id {
                next += 1;
                logit = penalize(logit, penalty);
            }
            // Strictly greater: the first of equal logits stays; false for NaN and for
            // -inf, which is never a token.
            if logit > best_logit {
                best = Some(id);
                best_logit = logit;
            }
        }
        best
    }

    /// Keeps the `top_k` best candidates, sorted by rank. Returns whether `candidates`
    /// is now in rank order.
    fn top_k(&mut self) -> bool {
        let k = self.cfg.top_k;
        let c = &mut self.candidates;
        if k == 0 || k >= c.len() {
            return false;
        }
        c.select_nth_unstable_by_key(k - 1, rank_key);
        c.truncate(k);
        c.sort_unstable_by(by_rank);
        true
    }

    /// Keeps the shortest rank-ordered prefix whose softmax mass reaches `top_p`.
    /// Returns whether `candidates` is in rank order.
    fn top_p(&mut self, sorted: bool) -> bool {
        let p = self.cfg.top_p;
        if p >= 1.0 {
            return sorted;
        }
        let c = &mut self.candidates;
        let max = if sorted { c[0].logit } else { max_logit(c) };
        let total: f64 = c.iter().map(|x| weight(x.logit, max)).sum();
        let target = f64::from(p) * total;
        let n = c.len();
        // c[..ranked] is in rank order and holds the best `ranked` candidates.
        let mut ranked = if sorted { n } else { 0 };
        let mut cum = 0.0;
        let mut keep = 0;
        while keep < n {
            if keep == ranked {
                let want = if ranked == 0 {
                    TOP_P_FIRST_RANK.min(n)
                } else {
                    n
                };
                let rest = &mut c[ranked..];
                let m = want - ranked;
                if m < rest.len() {
                    rest.select_nth_unstable_by_key(m - 1, rank_key);
                }
                rest[..m].sort_unstable_by(by_rank);
                ranked = want;
            }
            cum += weight(c[keep].logit, max);
            keep += 1;
            if cum >= target {
                break;
            }
        }
        c.truncate(keep);
        true
    }

    /// Drops candidates whose probability is below `min_p` times the largest.
    fn min_p(&mut self, sorted: bool) {
        let p = self.cfg.min_p;
        if p <= 0.0 {
            return;
        }
        let c = &mut self.candidates;
        let max = if sorted { c[0].logit } else { max_logit(c) };
        // p <= 1, so ln(p) <= 0 and the max itself always stays.
        let threshold = max + p.ln();
        if sorted {
            let keep = c.partition_point(|x| x.logit >= threshold);
            c.truncate(keep);
        } else {
            c.retain(|x| x.logit >= threshold);
        }
    }

    /// Softmax over the survivors and one draw, walking them in their current order.
    fn draw(&mut self) -> u32 {
        let c = &self.candidates;
        if c.len() == 1 {
            return c[0].id;
        }
        let max = max_logit(c);
        let total: f64 = c.iter().map(|x| weight(x.logit, max)).sum();
        let target = self.rng.next_f64() * total;
        let mut cum = 0.0;
        // `target < total`, but the two sums round differently; if the walk ends short,
        // the last token with any weight takes the remainder.
        let mut last = c[0].id;
        for x in c {
            let w = weight(x.logit, max);
            if w > 0.0 {
                cum += w;
                last = x.id;
                if cum > target {
                    return x.id;
                }
            }
        }
        last
    }
}
