//! `vtpu profile`: run a model's prefill and generation with every slot timed, and report
//! where the time goes per layer, op kind and sentron, against this machine's probed
//! ceilings (text on stdout, `--json`, an HTML report, a Chrome trace), plus hardware
//! counters or a cachegrind run. The analysis lives in crates/profile; this file runs
//! the workload and writes the files.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vtpu_llm::layer_coords::{self as lc, TensorKind};
use vtpu_llm::model::{Model, RunStats};
use vtpu_profile::analysis::{self, Ceilings, ModelSide, PhaseInput};
use vtpu_profile::attribution::map_program;
use vtpu_profile::hwcounters::{HwCounters, HwSession};
use vtpu_profile::probe::ProbeOptions;
use vtpu_profile::report::{MachineInfo, ModelInfo, ProfilerCost, Report, REPORT_VERSION};

use crate::cmd_model::{self, ModelArgs, Opened};

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens processed in prefill (fixed ids, as `vtpu bench` uses).
    #[arg(short = 'p', long = "n-prompt", value_name = "N", default_value_t = 64)]
    pub n_prompt: usize,
    /// Tokens generated after the prompt (greedy), one call each.
    #[arg(short = 'n', long = "n-gen", value_name = "N", default_value_t = 32)]
    pub n_gen: usize,
    /// Sequences decoded together (batched decoding, as `vtpu generate --prompts`): each
    /// gets the prompt in a KV region of its own, then every decode step takes one
    /// token of each; the decode phase profiles the batched program and counts tokens
    /// over all the sequences.
    #[arg(long, value_name = "B", default_value_t = 1)]
    pub batch: usize,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long, value_name = "FILE", default_value = "vtpu-profile.html")]
    pub html: PathBuf,
    /// Write a Chrome trace (chrome://tracing, Perfetto) of the first profiled call of
    /// each phase: one span per layer region and per op, per sentron.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Also run a shorter copy of the workload under valgrind's cachegrind and
    /// summarise simulated cache misses per op kind (slow: about a minute).
    #[arg(long)]
    pub cachegrind: bool,
    /// Measure the machine again instead of using the cached probe.
    #[arg(long)]
    pub force_probe: bool,
    /// Run the workload only, without profiling or output (what --cachegrind runs).
    #[arg(long, hide = true)]
    pub workload_only: bool,
}

/// Fail early, naming the path and the option, when `path` cannot be written.
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: is a directory", path.display());
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("{flag} {}: cannot write", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn write_file(path: &Path, flag: &str, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("{flag} {}: cannot write", path.display()))
}

/// The token ids of the workload: a fixed pattern of valid ids (as `vtpu bench`).
fn prompt(vocab: usize, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + 13) % vocab as u32)
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Prefill `ids` into each of `batch` sequences, then `n` greedy steps (one token of
/// every sequence per step: `decode_batch`); returns (prefill stats, decode stats,
/// prefill ns, decode ns) measured around the calls.
fn workload(
    m: &mut Model,
    ids: &[u32],
    n: usize,
    batch: usize,
) -> Result<(RunStats, RunStats, u64, u64)> {
    let v = m.cfg.vocab;
    for s in 0..batch {
        m.truncate_seq(s, 0);
    }
    let _ = m.take_stats();
    let t0 = Instant::now();
    let mut next = Vec::with_capacity(batch);
    for s in 0..batch {
        next.push((s, argmax(m.forward_seq(s, ids)?)));
    }
    let pre_ns = t0.elapsed().as_nanos() as u64;
    let pre = m.take_stats();
    let t1 = Instant::now();
    for _ in 0..n {
        let logits = m.decode_batch(&next)?;
        for (i, e) in next.iter_mut().enumerate() {
            e.1 = argmax(&logits[i * v..(i + 1) * v]);
        }
    }
    let dec_ns = t1.elapsed().as_nanos() as u64;
    Ok((pre, m.take_stats(), pre_ns, dec_ns))
}

fn cachegrind_args(a: &ProfileArgs, o: &Opened, ctx: usize) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "profile".into(),
        "--workload-only".into(),
        "-m".into(),
        o.path.display().to_string(),
        // Under valgrind every instruction is simulated (~50x slower): a shorter run.
        "-p".into(),
        a.n_prompt.clamp(1, 16).to_string(),
        "-n".into(),
        a.n_gen.min(4).to_string(),
        "--ctx".into(),
        ctx.to_string(),
        "--kv-type".into(),
        a.model.kv_type.clone(),
        "--ubatch".into(),
        a.model.ubatch.to_string(),
        "--batch".into(),
        a.batch.to_string(),
    ];
    if let Some(t) = a.model.threads {
        v.extend(["--threads".into(), t.to_string()]);
    }
    if a.model.no_pin {
        v.push("--no-pin".into());
    }
    v
}

pub fn profile_cmd(a: ProfileArgs) -> Result<()> {
    if !a.workload_only {
        check_writable(&a.html, "--html")?;
        if let Some(j) = &a.json {
            check_writable(j, "--json")?;
        }
        if let Some(t) = &a.trace {
            check_writable(t, "--trace")?;
        }
    }
    if a.n_prompt == 0 {
        bail!("-p must be at least 1 (prefill needs a token)");
    }
    let o = cmd_model::open(&a.model.model)?;
    let mut args = a.model.clone();
    let need = a.n_prompt + a.n_gen;
    if args.ctx.is_none() {
        args.ctx = Some(need.max(256).min(o.cfg.layer.max_seq));
    }
    if a.batch == 0 || a.batch > vtpu_llm::model::MAX_SLOTS {
        bail!(
            "--batch {}: expected 1..={} sequences",
            a.batch,
            vtpu_llm::model::MAX_SLOTS
        );
    }
    let mut m = cmd_model::load_with_slots(&o, &args, a.batch)?;
    let ctx = m.capacity().ctx;
    if need > ctx {
        bail!(
            "-p {} + -n {} tokens do not fit --ctx {ctx}",
            a.n_prompt,
            a.n_gen
        );
    }
    let ids = prompt(o.cfg.vocab, a.n_prompt);
    if a.workload_only {
        workload(&mut m, &ids, a.n_gen, a.batch)?;
        return Ok(());
    }
    let (probe, probe_src) = crate::cmd_probe::probe(a.force_probe, &ProbeOptions::default())?;
    let sentrons = m.plan().sentrons();
    let ceil = probe
        .ceiling(sentrons)
        .context("the probe has no ceilings (run vtpu probe --force)")?;
    let ceilings = Ceilings {
        threads: ceil.threads,
        read_gbs: ceil.read_gbs,
        f32_gflops: ceil.f32_gflops,
        int8_gops: ceil.int8_gops,
    };
    let mut notes = Vec::new();
    if ceil.threads != sentrons {
        notes.push(format!(
            "{sentrons} sentrons but the probe measured at most {} threads: its largest row is used",
            ceil.threads
        ));
    }

    // Warm-up and unprofiled timing (hardware counters around it: the real workload).
    eprintln!("vtpu: warm-up and unprofiled run ...");
    workload(&mut m, &ids, a.n_gen, a.batch)?;
    let hw = HwSession::start();
    let (_, _, off_pre_ns, off_dec_ns) = workload(&mut m, &ids, a.n_gen, a.batch)?;
    let hw: HwCounters = hw.stop(&format!(
        "unprofiled prefill of {} tokens + {} decode steps, all threads of the process",
        a.n_prompt, a.n_gen
    ));
    eprintln!("vtpu: profiled run ...");
    m.set_profile(true);
    let (pre, dec, _, on_dec_ns) = workload(&mut m, &ids, a.n_gen, a.batch)?;
    m.set_profile(false);

    let program = m.program();
    let maps = map_program(program, sentrons);
    // The decode steps of a batch run the batched program of the smallest batch size
    // that holds it (`Model::decode_batch`); its words are what the decode profile
    // counts.
    let dec_program = match m.batch_sizes().iter().position(|&b| b >= a.batch) {
        Some(k) if a.batch > 1 => {
            notes.push(format!(
                "decode: {} sequences per step (the batched program of {} rows); tokens and tok/s count every sequence's",
                a.batch,
                m.batch_sizes()[k]
            ));
            &m.programs()[k + 1]
        }
        _ => program,
    };
    let dec_maps = map_program(dec_program, sentrons);
    let wq = lc::weight(0, TensorKind::Wq, 0)
        .ok()
        .and_then(|c| m.space().get(c))
        .map(|p| p.dtype());
    let side = ModelSide {
        program,
        maps: &maps,
        quantized: wq.is_some_and(|d| d.is_quantized()),
        ceilings,
        clock_ns: analysis::clock_cost_ns(),
    };
    let dec_side = ModelSide {
        program: dec_program,
        maps: &dec_maps,
        ..side
    };
    let mut phases = Vec::new();
    for (name, st, off_ns, side) in [
        ("prefill", &pre, off_pre_ns, &side),
        ("decode", &dec, off_dec_ns, &dec_side),
    ] {
        let Some(p) = &st.profile else {
            if st.tokens > 0 {
                notes.push(format!(
                    "{name}: no profile (the reference executor is not profiled)"
                ));
            }
            continue;
        };
        phases.push(analysis::analyze_phase(
            side,
            &PhaseInput {
                name,
                tokens: st.tokens,
                calls: st.calls,
                profile: p,
                counters: &st.counters,
                wall_ns: st.host_ns,
                unprofiled_wall_ns: Some(off_ns),
            },
        ));
    }
    let tok_s =
        |ns: u64| (a.n_gen > 0 && ns > 0).then(|| (a.n_gen * a.batch) as f64 / (ns as f64 / 1e9));
    let fp = &probe.fingerprint;
    let c = &o.cfg;
    let mut report = Report {
        version: REPORT_VERSION,
        model: ModelInfo {
            path: o.path.display().to_string(),
            arch: c.arch.name().to_string(),
            layers: c.n_layers,
            dim: c.layer.dim,
            vocab: c.vocab,
            params: c.params(),
            weight_type: wq.map_or("?".into(), |d| d.name().to_string()),
            sentrons,
            file_bytes: std::fs::metadata(&o.path).map_or(0, |md| md.len()),
            mapped_bytes: m.load.mapped_bytes as u64,
            copied_bytes: m.load.copied_bytes as u64,
            program_words: m.load.words,
        },
        machine: MachineInfo {
            cpu_model: fp.cpu_model.clone(),
            cores: fp.cores,
            features: fp.features.clone(),
            caches: probe.caches.clone(),
            probe: probe.ceilings.clone(),
            f32_kernel: probe.f32_kernel.clone(),
            int8_kernel: probe.int8_kernel.clone(),
            probe_source: probe_src,
        },
        ceilings,
        phases,
        profiler: ProfilerCost {
            clock_ns: side.clock_ns,
            decode_tok_s_off: tok_s(off_dec_ns),
            decode_tok_s_on: tok_s(on_dec_ns),
        },
        hw_counters: hw,
        cachegrind: None,
        cachegrind_error: None,
        notes,
    };
    drop(m);
    if a.cachegrind {
        let exe = std::env::current_exe().context("cannot find the vtpu executable")?;
        let out = std::env::temp_dir().join(format!("vtpu-cachegrind-{}.out", std::process::id()));
        let args = cachegrind_args(&a, &o, ctx);
        eprintln!(
            "vtpu: valgrind --tool=cachegrind {} {} ...",
            exe.display(),
            args.join(" ")
        );
        match vtpu_profile::cachegrind::run(&exe, &args, &out) {
            Ok(s) => report.cachegrind = Some(s),
            Err(e) => {
                eprintln!("vtpu: cachegrind: {e}");
                report.cachegrind_error = Some(e.to_string());
            }
        }
        let _ = std::fs::remove_file(&out);
    }

    {
        use std::io::Write;
        // A closed pipe (`| head`) must not stop the files from being written.
        let mut out = std::io::stdout().lock();
        if let Err(e) = out
            .write_all(vtpu_profile::text::render(&report).as_bytes())
            .and_then(|_| out.flush())
        {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e).context("cannot write to standard output");
            }
        }
    }
    write_file(&a.html, "--html", &vtpu_profile::html::render(&report))?;
    eprintln!("vtpu: HTML report: {}", a.html.display());
    if let Some(j) = &a.json {
        write_file(j, "--json", &serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(t) = &a.trace {
        write_file(
            t,
            "--trace",
            &vtpu_profile::trace::render(&report).to_string(),
        )?;
    }
    Ok(())
}
