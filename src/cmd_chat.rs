//! `vtpu chat`: an interactive chat in the terminal, with the model's chat template and
//! streaming; `/reset` starts over, `/exit` (or end of input) quits.
//!
//! With `--session FILE.phext` the conversation (its messages, the tokens fed to the
//! model and their KV cache pages) is saved to phext space at exit, atomically (the
//! previous session stays loadable if the save fails), and the next `vtpu chat
//! --session FILE.phext` resumes from it without recomputing the prompt.
//!
//! Each turn renders the whole conversation and feeds only the tokens after the
//! longest prefix the KV cache already holds. Each reply samples with its own seed
//! (`--seed` + the number of replies so far), so a resumed conversation answers
//! exactly as an uninterrupted one would.

use crate::cmd_model::{self, ModelArgs};
use crate::cmd_serve::template_and_eog;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;
use vtpu_llm::chat::{apply_chat_template_named, ChatMessage};
use vtpu_llm::sampler::{Sampler, SamplerConfig};
use vtpu_server::cache::{common_prefix, Entry};
use vtpu_server::{cache_file, Engine, ModelEngine};

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Save the conversation and its KV cache here at exit; resume from it at start.
    #[arg(long, value_name = "FILE.phext")]
    pub session: Option<PathBuf>,
    /// A system message to start the conversation with (ignored when resuming).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 512
    )]
    pub n: usize,
    /// Temperature; 0 = greedy.
    #[arg(long, value_name = "T", default_value_t = 0.8)]
    pub temp: f32,
    /// Random seed; reply k samples with seed + k.
    #[arg(long, value_name = "S", default_value_t = vtpu_llm::sampler::DEFAULT_SEED)]
    pub seed: u64,
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
}

/// The conversation and what the model's KV cache holds.
struct Chat {
    messages: Vec<ChatMessage>,
    /// Tokens whose KV the engine holds, in order.
    fed: Vec<u32>,
    replies: u64,
}

pub fn chat_cmd(a: ChatArgs) -> Result<()> {
    let o = cmd_model::open(&a.model.model)?;
    let (template, extra_eog) = template_and_eog(&o);
    let Some(template) = template else {
        bail!("{}: the model has no chat template", o.path.display());
    };
    let piece = |t: Option<u32>| {
        t.map(|i| String::from_utf8_lossy(&o.tok.token_to_piece(i, true)).into_owned())
            .unwrap_or_default()
    };
    let (bos, eos) = (piece(o.tok.bos()), piece(o.tok.eos()));
    let model = cmd_model::load(&o, &a.model)?;
    let mut engine = ModelEngine::new(model)?;
    let ctx = engine.ctx();
    let mut chat = Chat {
        messages: Vec::new(),
        fed: Vec::new(),
        replies: 0,
    };
    if let Some(s) = &a.system {
        chat.messages.push(ChatMessage::new("system", s.clone()));
    }
    if let Some(path) = a.session.as_ref().filter(|p| p.exists()) {
        resume(&mut engine, &mut chat, path)?;
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!("vtpu chat: /reset starts over, /exit quits");
    }
    let mut out = std::io::stdout().lock();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("cannot read standard input")?;
        let text = line.trim_end_matches(['\r', '\n']);
        match text.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.messages.retain(|m| m.role == "system");
                chat.replies = 0;
                eprintln!("vtpu chat: new conversation");
                continue;
            }
            _ => {}
        }
        chat.messages.push(ChatMessage::new("user", text));
        let rendered = apply_chat_template_named(
            &format!("{} chat template", o.path.display()),
            &template,
            &chat.messages,
            true,
            &bos,
            &eos,
        )?;
        let ids = o.tok.encode(&rendered, o.tok.add_bos(), true);
        if ids.is_empty() || ids.len() >= ctx {
            chat.messages.pop();
            eprintln!(
                "vtpu chat: the conversation has {} tokens, the context holds {ctx}: /reset to start over",
                ids.len()
            );
            continue;
        }
        let n = a.n.min(ctx + 1 - ids.len());
        let cfg = SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: a.seed.wrapping_add(chat.replies),
        };
        let mut sampler = Sampler::new(cfg)?;
        // Keep the longest cached prefix; at least the last prompt token is computed
        // (its logits give the first reply token).
        let keep = common_prefix(&chat.fed, &ids).min(ids.len() - 1);
        engine.truncate_seq(0, keep);
        chat.fed.truncate(keep);
        let t0 = Instant::now();
        let logits = engine.prefill(0, &ids[keep..])?;
        for &t in &ids {
            sampler.accept(t);
        }
        let mut next = sampler.sample(logits)?;
        chat.fed.extend_from_slice(&ids[keep..]);
        let ttft = t0.elapsed();
        let mut dec = o.tok.stream();
        let mut reply = String::new();
        let mut generated = 0;
        loop {
            if o.tok.is_eog(next) || extra_eog.contains(&next) {
                break;
            }
            generated += 1;
            sampler.accept(next);
            let s = dec.push(next);
            reply.push_str(&s);
            out.write_all(s.as_bytes())
                .and_then(|_| out.flush())
                .context("cannot write to standard output")?;
            if generated >= n {
                break;
            }
            let logits = engine.decode(&[(0, next)])?;
            chat.fed.push(next);
            next = sampler.sample(logits)?;
        }
        let tail = dec.finish();
        reply.push_str(&tail);
        writeln!(out, "{tail}").context("cannot write to standard output")?;
        out.flush().ok();
        chat.messages.push(ChatMessage::new("assistant", reply));
        chat.replies += 1;
        eprintln!(
            "vtpu chat: prompt {} tokens ({} cached), first token after {:.1} ms; {generated} tokens in {:.1} ms",
            ids.len(),
            keep,
            ttft.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Some(path) = &a.session {
        save(&mut engine, &chat, path)?;
    }
    Ok(())
}

fn resume(engine: &mut ModelEngine, chat: &mut Chat, path: &std::path::Path) -> Result<()> {
    let t0 = Instant::now();
    let l = cache_file::load(path, engine.fingerprint(), engine.kv_pages_per_slot())
        .with_context(|| format!("cannot resume the session {}", path.display()))?;
    let msgs = l.extra["messages"]
        .as_array()
        .with_context(|| format!("{}: the session has no messages", path.display()))?;
    chat.messages = msgs
        .iter()
        .map(|m| {
            Some(ChatMessage::new(
                m["role"].as_str()?.to_string(),
                m["content"].as_str()?.to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("{}: a message without role or content", path.display()))?;
    chat.replies = l.extra["replies"].as_u64().unwrap_or(0);
    if let Some(e) = l.entries.into_iter().next() {
        if e.tokens.len() > engine.ctx() {
            bail!(
                "{}: the session holds {} tokens, more than --ctx {}",
                path.display(),
                e.tokens.len(),
                engine.ctx()
            );
        }
        let recomputed = engine.restore(0, &e.snap, &e.tokens)?;
        eprintln!(
            "vtpu chat: resumed {} messages, {} tokens in {:.1} ms ({})",
            chat.messages.len(),
            e.tokens.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            if recomputed == 0 {
                "KV pages restored, nothing recomputed".to_string()
            } else {
                format!("{recomputed} tokens recomputed")
            }
        );
        chat.fed = e.tokens;
    }
    Ok(())
}

fn save(engine: &mut ModelEngine, chat: &Chat, path: &std::path::Path) -> Result<()> {
    let t0 = Instant::now();
    let n = chat.fed.len();
    let snap = engine.snapshot(0, n)?;
    let dtype = snap.dtype;
    let entry = Entry {
        tokens: chat.fed.clone(),
        snap,
        last_used: 0,
    };
    let entries: Vec<&Entry> = if n > 0 { vec![&entry] } else { vec![] };
    let messages: Vec<serde_json::Value> = chat
        .messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    cache_file::save(
        path,
        engine.fingerprint(),
        dtype,
        engine.kv_pages_per_slot(),
        &entries,
        serde_json::json!({"messages": messages, "replies": chat.replies}),
    )
    .with_context(|| format!("cannot save the session {}", path.display()))?;
    eprintln!(
        "vtpu chat: session saved to {} ({} messages, {n} tokens of KV) in {:.1} ms",
        path.display(),
        chat.messages.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
