//! The generation loop: prompt ids -> model (prefill) -> sampler -> token -> model
//! (decode) ... until `n` tokens, an end-of-generation token, or a stop.
//!
//! The model (the sentrons) computes every logit; this loop only samples, feeds the
//! sampled token back and reports. Nothing is allocated per token beyond what the
//! caller's callback does.

use crate::model::{Model, ModelError, RunStats};
use crate::sampler::{Sampler, SamplerError};
use std::time::Instant;

/// Why generation stopped early or could not start.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("the prompt is empty: there is no token to start from")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens and {n} more were asked for, but the context holds {ctx} (raise --ctx or lower -n)")]
    Context { prompt: usize, n: usize, ctx: usize },
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `n` tokens were generated.
    Length,
    /// An end-of-generation token was sampled (not emitted).
    EndOfGeneration,
    /// The callback asked to stop.
    Callback,
}

/// What one generation measured.
#[derive(Clone, Debug)]
pub struct GenerateReport {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub prompt_tokens: usize,
    /// Host wall time of the prompt (prefill) and of the generated tokens.
    pub prompt_ms: f64,
    pub gen_ms: f64,
    /// Virtual counters and host time of the prefill calls and of the decode calls.
    pub prompt_stats: RunStats,
    pub gen_stats: RunStats,
}

impl GenerateReport {
    pub fn prompt_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_ms)
    }
    /// Tokens per second of generation: every sampled token after the first costs one
    /// decode call (the first comes from the prompt's logits).
    pub fn gen_tok_s(&self) -> f64 {
        rate(self.gen_stats.tokens as usize, self.gen_ms)
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 / (ms / 1e3)
    } else {
        0.0
    }
}

/// Generate up to `n` tokens after `prompt` (appended to whatever the model's cache
/// holds; call `model.reset()` first for a fresh sequence). `is_eog` says which tokens
/// end generation. `on_token` sees each emitted token and returns false to stop.
pub fn generate(
    model: &mut Model,
    sampler: &mut Sampler,
    prompt: &[u32],
    n: usize,
    is_eog: impl Fn(u32) -> bool,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<GenerateReport, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let ctx = model.capacity().ctx;
    // The last generated token is never fed back, so `n` tokens need n - 1 positions.
    if model.pos() + prompt.len() + n.saturating_sub(1) > ctx {
        return Err(GenerateError::Context {
            prompt: model.pos() + prompt.len(),
            n,
            ctx,
        });
    }
    for &t in prompt {
        sampler.accept(t);
    }
    let _ = model.take_stats();
    let t0 = Instant::now();
    let mut next = {
        let logits = model.forward(prompt)?;
        sampler.sample(logits)?
    };
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let prompt_stats = model.take_stats();
    let mut tokens = Vec::with_capacity(n);
    let t1 = Instant::now();
    let mut stop = StopReason::Length;
    while tokens.len() < n {
        if is_eog(next) {
            stop = StopReason::EndOfGeneration;
            break;
        }
        tokens.push(next);
        sampler.accept(next);
        if !on_token(next) {
            stop = StopReason::Callback;
            break;
        }
        if tokens.len() == n {
            break;
        }
        let logits = model.forward(&[next])?;
        next = sampler.sample(logits)?;
    }
    let gen_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(GenerateReport {
        tokens,
        stop,
        prompt_tokens: prompt.len(),
        prompt_ms,
        gen_ms,
        prompt_stats,
        gen_stats: model.take_stats(),
    })
}

/// What a batched generation measured.
#[derive(Clone, Debug)]
pub struct BatchReport {
    /// Per sequence: the emitted tokens and why it stopped.
    pub tokens: Vec<Vec<u32>>,
    pub stops: Vec<StopReason>,
    /// Prompt tokens of all sequences, and the host time of their prefills.
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    /// Batched decode steps, the tokens they decoded (all sequences), and their time.
    pub steps: usize,
    pub decoded: usize,
    pub gen_ms: f64,
    pub prompt_stats: RunStats,
    pub gen_stats: RunStats,
}

impl BatchReport {
    /// Aggregate generation tokens per second (every sequence's decoded tokens).
    pub fn gen_tok_s(&self) -> f64 {
        rate(self.decoded, self.gen_ms)
    }
    pub fn prompt_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_ms)
    }
}

/// Generate up to `n` tokens after each prompt, the sequences decoded together: prompt
/// `i` is prefilled into slot `i` (which is reset), then every step decodes one token of
/// each unfinished sequence in one batched call (`Model::decode_batch`: weights read once
/// per step). `samplers[i]` samples sequence `i`; `on_token(i, t)` sees its tokens and
/// returns false to stop that sequence.
pub fn generate_batch(
    model: &mut Model,
    samplers: &mut [Sampler],
    prompts: &[Vec<u32>],
    n: usize,
    is_eog: impl Fn(u32) -> bool,
    mut on_token: impl FnMut(usize, u32) -> bool,
) -> Result<BatchReport, GenerateError> {
    let b = prompts.len();
    if b > model.slots() {
        return Err(GenerateError::Model(ModelError::Slot {
            slot: b - 1,
            slots: model.slots(),
        }));
    }
    let ctx = model.capacity().ctx;
    for p in prompts {
        if p.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if p.len() + n.saturating_sub(1) > ctx {
            return Err(GenerateError::Context {
                prompt: p.len(),
                n,
                ctx,
            });
        }
    }
    let _ = model.take_stats();
    let t0 = Instant::now();
    let mut next = Vec::with_capacity(b);
    for (i, (p, s)) in prompts.iter().zip(samplers.iter_mut()).enumerate() {
        model.truncate_seq(i, 0);
        for &t in p {
            s.accept(t);
        }
        let logits = model.forward_seq(i, p)?;
        next.push(s.sample(logits)?);
    }
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let prompt_stats = model.take_stats();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::with_capacity(n); b];
    let mut stops: Vec<Option<StopReason>> = vec![None; b];
    let (mut steps, mut decoded) = (0, 0);
    let t1 = Instant::now();
    let mut batch: Vec<(usize, u32)> = Vec::with_capacity(b);
    let v = model.cfg.vocab;
    loop {
        batch.clear();
        for i in 0..b {
            if stops[i].is_some() {
                continue;
            }
            let t = next[i];
            if is_eog(t) {
                stops[i] = Some(StopReason::EndOfGeneration);
                continue;
            }
            tokens[i].push(t);
            samplers[i].accept(t);
            if !on_token(i, t) {
                stops[i] = Some(StopReason::Callback);
            } else if tokens[i].len() == n {
                stops[i] = Some(StopReason::Length);
            } else {
                batch.push((i, t));
            }
        }
        if batch.is_empty() {
            break;
        }
        let logits = model.decode_batch(&batch)?;
        steps += 1;
        decoded += batch.len();
        for (r, &(i, _)) in batch.iter().enumerate() {
            next[i] = samplers[i].sample(&logits[r * v..(r + 1) * v])?;
        }
    }
    let gen_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(BatchReport {
        tokens,
        stops: stops
            .into_iter()
            .map(|s| s.unwrap_or(StopReason::Length))
            .collect(),
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
        prompt_ms,
        steps,
        decoded,
        gen_ms,
        prompt_stats,
        gen_stats: model.take_stats(),
    })
}
