//! The scheduler against a fake multi-slot engine (today's `Model` has one slot; the
//! multi-sequence API is being added): continuous batching, requests joining at the
//! next step, the prompt cache across slots and the store, and cancellation. The fake's
//! "logits" are a function of the whole sequence a slot holds, so any token lost,
//! duplicated or mixed between slots changes the answer.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::mpsc as tmpsc;
use vtpu_llm::sampler::SamplerConfig;
use vtpu_phext::DType;
use vtpu_server::api::Params;
use vtpu_server::sched::{self, Cmd, Event, Finish, Job, ModelInfo, SchedConfig, Shared};
use vtpu_server::{Engine, EngineError, KvSnap, Loaded};

const VOCAB: usize = 2003;

struct Fake {
    seqs: Vec<Vec<u32>>,
    rows: Vec<f32>,
    /// Rows per decode call, to see the batching.
    batches: Arc<std::sync::Mutex<Vec<usize>>>,
    /// Tokens computed (prefill + decode), to see the cache.
    computed: Arc<std::sync::atomic::AtomicUsize>,
}

fn next_of(seq: &[u32]) -> usize {
    let h = seq.iter().fold(0xcbf29ce484222325u64, |h, &t| {
        (h ^ t as u64).wrapping_mul(0x100000001b3)
    });
    // Stay below the special tokens (2000..2003).
    (h % 1990) as usize + 3
}

impl Fake {
    fn logits_into(seq: &[u32], out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + VOCAB, 0.0);
        out[start + next_of(seq)] = 10.0;
    }
}

impl Engine for Fake {
    fn slots(&self) -> usize {
        self.seqs.len()
    }
    fn ctx(&self) -> usize {
        512
    }
    fn vocab(&self) -> usize {
        VOCAB
    }
    fn seq_pos(&self, slot: usize) -> usize {
        self.seqs[slot].len()
    }
    fn truncate_seq(&mut self, slot: usize, pos: usize) {
        self.seqs[slot].truncate(pos);
    }
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], EngineError> {
        self.seqs[slot].extend_from_slice(tokens);
        self.computed.fetch_add(tokens.len(), Ordering::Relaxed);
        self.rows.clear();
        Fake::logits_into(&self.seqs[slot], &mut self.rows);
        Ok(&self.rows)
    }
    fn decode(&mut self, batch: &[(usize, u32)]) -> Result<&[f32], EngineError> {
        self.batches.lock().unwrap().push(batch.len());
        // A step takes time, as a real one does, so requests can overlap.
        std::thread::sleep(Duration::from_micros(200));
        self.rows.clear();
        for &(slot, t) in batch {
            self.seqs[slot].push(t);
            self.computed.fetch_add(1, Ordering::Relaxed);
            Fake::logits_into(&self.seqs[slot], &mut self.rows);
        }
        Ok(&self.rows)
    }
    fn snapshot(&mut self, slot: usize, n: usize) -> Result<KvSnap, EngineError> {
        let s = &self.seqs[slot][..n];
        Ok(KvSnap {
            pos: n,
            dtype: DType::F32,
            model_fingerprint: 1,
            pages: vec![s.iter().flat_map(|t| t.to_le_bytes()).collect()],
        })
    }
    fn restore(
        &mut self,
        slot: usize,
        snap: &KvSnap,
        _tokens: &[u32],
    ) -> Result<usize, EngineError> {
        self.seqs[slot] = snap.pages[0]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(0)
    }
    fn can_restore(&self) -> bool {
        true
    }
    fn fingerprint(&self) -> u64 {
        1
    }
    fn kv_pages_per_slot(&self) -> usize {
        1
    }
    fn take_ppt(&mut self) -> (u64, u64) {
        (0, 0)
    }
}

struct Harness {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    batches: Arc<std::sync::Mutex<Vec<usize>>>,
    computed: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn tokenizer() -> vtpu_tokenizer::Tokenizer {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/models/qwen3-tiny.gguf"
    );
    let g = vtpu_modelfile::gguf::GgufFile::open(p).unwrap();
    vtpu_tokenizer::Tokenizer::from_gguf(&g).unwrap()
}

fn start(slots: usize) -> Harness {
    let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
    let computed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (b2, c2) = (Arc::clone(&batches), Arc::clone(&computed));
    let loader: sched::Loader = Box::new(move || {
        Ok(Loaded {
            engine: Box::new(Fake {
                seqs: vec![Vec::new(); slots],
                rows: Vec::new(),
                batches: b2,
                computed: c2,
            }),
            info: ModelInfo {
                id: "fake".into(),
                tokenizer: Arc::new(tokenizer()),
                chat_template: None,
                bos_text: String::new(),
                eos_text: String::new(),
                extra_eog: vec![],
                ctx: 512,
                vocab: VOCAB,
                parallel: slots,
                kv_restore: true,
            },
        })
    });
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared::new());
    let s2 = Arc::clone(&shared);
    let cfg = SchedConfig {
        parallel: slots,
        cache_mem: 1 << 20,
        cache_dir: None,
    };
    let thread = std::thread::spawn(move || sched::run(loader, cfg, rx, s2));
    Harness {
        tx,
        shared,
        batches,
        computed,
        thread: Some(thread),
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn params() -> Params {
    Params {
        sampler: SamplerConfig::greedy(),
        max_tokens: None,
        stop: vec![],
        stream: true,
        ignore_eos: true,
    }
}

impl Harness {
    fn submit(&self, prompt: &[u32], n: usize) -> tmpsc::UnboundedReceiver<Event> {
        let (tx, rx) = tmpsc::unbounded_channel();
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(Cmd::Job(Job {
                prompt: prompt.to_vec(),
                params: params(),
                max_tokens: n,
                tx,
            }))
            .unwrap();
        rx
    }
}

/// Waits for the whole answer. Answers are compared as the text the fake's tokens
/// decode to (distinct ids decode to distinct pieces in this vocabulary's range).
fn collect(mut rx: tmpsc::UnboundedReceiver<Event>) -> (String, Finish) {
    let mut text = String::new();
    loop {
        match rx.blocking_recv().expect("an event") {
            Event::Text(t) => text.push_str(&t),
            Event::Done(f) => return (text, f),
            Event::Error(e) => panic!("{}", e.message),
        }
    }
}

fn alone(prompt: &[u32], n: usize) -> String {
    let h = start(1);
    collect(h.submit(prompt, n)).0
}

#[test]
fn sequences_decode_together_and_match_their_answers_alone() {
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|k| (0..5 + k).map(|i| 100 + 7 * i + k).collect())
        .collect();
    let expected: Vec<String> = prompts.iter().map(|p| alone(p, 40)).collect();
    let h = start(4);
    let rxs: Vec<_> = prompts.iter().map(|p| h.submit(p, 40)).collect();
    let got: Vec<String> = rxs.into_iter().map(|rx| collect(rx).0).collect();
    assert_eq!(got, expected);
    let b = h.batches.lock().unwrap().clone();
    // Up to 4 sequences per step, and more than one most of the time.
    assert!(b.iter().all(|&n| n <= 4), "{b:?}");
    assert!(b.iter().filter(|&&n| n >= 2).count() * 2 > b.len(), "{b:?}");
    // 6 x 39 fed tokens in far fewer steps than one per token.
    assert!(b.len() < 6 * 39 / 2, "{} steps", b.len());
}

#[test]
fn a_new_request_joins_while_others_decode() {
    let h = start(2);
    let mut long = h.submit(&[5, 6, 7], 300);
    // The long one is decoding.
    assert!(matches!(long.blocking_recv(), Some(Event::Text(_))));
    let (text, f) = collect(h.submit(&[9, 9, 9], 3));
    assert_eq!(f.completion_tokens, 3);
    assert!(!text.is_empty());
    // The long one is still running or just finished: the short one did not wait for it.
    let (_, lf) = collect(long);
    assert_eq!(lf.completion_tokens, 300);
    assert!(lf.timings.predicted_ms > 0.0);
    let b = h.batches.lock().unwrap().clone();
    assert!(
        b.contains(&2),
        "the short request never shared a step: {b:?}"
    );
}

#[test]
fn the_longest_cached_prefix_is_reused_from_any_slot_or_the_store() {
    let system: Vec<u32> = (0..40).map(|i| 300 + i).collect();
    let with = |tail: &[u32]| [system.as_slice(), tail].concat();
    let h = start(2);
    // Chat A fills slot 0.
    let (a1, f) = collect(h.submit(&with(&[1, 2]), 5));
    assert_eq!(f.timings.cache_n, 0);
    // Chat B shares the system prompt: copied from slot 0 into a free slot.
    let (_, f) = collect(h.submit(&with(&[3, 4]), 5));
    assert_eq!(f.timings.cache_n, 40, "{:?}", f.timings);
    assert_eq!(f.timings.prompt_n, 2);
    // Chat C, another prefix: overwrites the least recently used slot, whose sequence
    // goes to the store first.
    let other: Vec<u32> = (0..30).map(|i| 900 + i).collect();
    collect(h.submit(&other, 5));
    let d: Vec<u32> = (0..30).map(|i| 1200 + i).collect();
    collect(h.submit(&d, 5));
    // Chat A's next turn: its whole sequence (prompt + fed reply) is found again.
    let before = h.computed.load(Ordering::Relaxed);
    let turn2 = with(&[1, 2, 77, 78, 79]);
    let (_, f) = collect(h.submit(&turn2, 5));
    assert!(f.timings.cache_n >= 42, "{:?}", f.timings);
    assert_eq!(f.timings.cache_n + f.timings.prompt_n, turn2.len());
    assert_eq!(
        h.computed.load(Ordering::Relaxed) - before,
        f.timings.prompt_n + 4,
        "prompt_n must count exactly what was computed"
    );
    // And the answer is what a fresh engine gives.
    drop(h);
    assert_eq!(collect(start(1).submit(&with(&[1, 2]), 5)).0, a1);
    let h = start(1);
    let (fresh, _) = collect(h.submit(&turn2, 5));
    let h2 = start(2);
    collect(h2.submit(&with(&[1, 2]), 5));
    collect(h2.submit(&other, 5));
    collect(h2.submit(&d, 5));
    let (cached, f) = collect(h2.submit(&turn2, 5));
    assert!(f.timings.cache_n > 0);
    assert_eq!(cached, fresh);
}

#[test]
fn a_dropped_receiver_frees_its_slot() {
    let h = start(1);
    let rx = h.submit(&[1, 2, 3], 400);
    drop(rx);
    let (_, f) = collect(h.submit(&[4, 5, 6], 2));
    assert_eq!(f.completion_tokens, 2);
    assert_eq!(h.shared.metrics.cancelled.load(Ordering::Relaxed), 1);
    let total: usize = h.batches.lock().unwrap().iter().sum();
    assert!(
        total < 400,
        "the cancelled request kept decoding: {total} steps"
    );
}
