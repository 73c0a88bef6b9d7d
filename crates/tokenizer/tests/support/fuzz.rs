//! Random and adversarial inputs for the tokenizers, shared by
//! `examples/fuzz_tokenizer.rs` (long runs) and `tests/fuzz.rs` (a short run).
//!
//! Checked for every input and tokenizer:
//! - encode never panics and every id is inside the vocabulary (with and without
//!   special-token parsing and BOS/EOS);
//! - byte-level BPE without special parsing round-trips: the pieces of `encode(s)` are
//!   exactly the bytes of `s`; SentencePiece round-trips to `" " + s` with `▁` read as a
//!   space (its leading-space rule);
//! - the streaming decoder prints the same text as a lossy decode of all bytes;
//! - time per input stays bounded.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use vtpu_tokenizer::{Tokenizer, TokenizerKind};

/// splitmix64: tiny, deterministic, good enough to drive a fuzzer.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Codepoint pools that exercise different pre-tokenizer paths.
const POOLS: &[&[(u32, u32)]] = &[
    &[(0x20, 0x7E)], // printable ASCII
    &[(0x30, 0x39)], // digits
    &[
        (0x09, 0x0D),
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x3000, 0x3000),
        (0x2028, 0x2029),
        (0x85, 0x85),
    ], // whitespace
    &[(0xA1, 0x24F)], // Latin-1 / Latin Extended
    &[(0x300, 0x36F)], // combining marks
    &[(0x400, 0x4FF), (0x370, 0x3FF)], // Cyrillic, Greek
    &[(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3)], // CJK, kana, Hangul
    &[(0x1780, 0x17FF), (0x0E00, 0x0E7F), (0x0900, 0x097F)], // Khmer, Thai, Devanagari
    &[(0x1F300, 0x1FAFF), (0x200D, 0x200D), (0xFE0F, 0xFE0F)], // emoji, ZWJ, VS16
    &[(0x660, 0x669), (0xFF10, 0xFF19), (0x2160, 0x2188)], // non-ASCII numbers
    &[(0x2000, 0x206F), (0x3000, 0x303F), (0xFF00, 0xFF65)], // punctuation blocks
    &[(0x0, 0x1F), (0x7F, 0x9F)], // controls
    &[
        (0xE000, 0xF8FF),
        (0xFFF0, 0xFFFF),
        (0x10FFF0, 0x10FFFF),
        (0x378, 0x379),
    ], // private/unassigned
    &[(0x80, 0x10FFFF)], // anything
];

/// Fragments of special tokens and of the markers tokenizers treat specially.
const FRAGMENTS: &[&str] = &[
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<s>",
    "</s>",
    "<unk>",
    "<|im_",
    "end|>",
    "<|",
    "|>",
    "<",
    ">",
    "<0x0A>",
    "<0xFF>",
    "\u{2581}",
    "Ġ",
    "Ċ",
    "'s",
    "'LL",
    "'ve",
    " '",
    "\r\n",
    "\n\n\n",
    "  ",
    "\t",
    "...",
    "1234567",
    "3.14",
    "\u{FEFF}",
    "\u{200B}",
    "é",
    "e\u{301}",
    "🦙",
    "😶‍🌫️",
    "[EOT]",
    "<end_of_turn>",
    "<|fim_prefix|>",
    "<repo_name>",
];

fn random_pool(rng: &mut Rng) -> &'static [(u32, u32)] {
    POOLS[rng.below(POOLS.len())]
}

fn push_random_char(rng: &mut Rng, s: &mut String, pool: &[(u32, u32)]) {
    let (a, b) = pool[rng.below(pool.len())];
    for _ in 0..8 {
        let cp = a + (rng.next_u64() % u64::from(b - a + 1)) as u32;
        if let Some(c) = char::from_u32(cp) {
            s.push(c);
            return;
        }
    }
}

/// One input. `prev` is mutated sometimes; `specials` are the vocabulary's special token
/// texts (so fragments of the real ones appear).
pub fn gen_input(rng: &mut Rng, prev: &str, specials: &[String]) -> String {
    let mut s = String::new();
    match rng.below(10) {
        // Mixed pools, short.
        0..=3 => {
            let n = rng.below(48);
            let pool = random_pool(rng);
            for _ in 0..n {
                if rng.chance(25) {
                    let p = random_pool(rng);
                    push_random_char(rng, &mut s, p);
                } else {
                    push_random_char(rng, &mut s, pool);
                }
            }
        }
        // Fragments and special tokens glued with random text.
        4 | 5 => {
            for _ in 0..1 + rng.below(8) {
                match rng.below(3) {
                    0 => s.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]),
                    1 if !specials.is_empty() => {
                        let t = &specials[rng.below(specials.len())];
                        // Whole token or a prefix/suffix of it (on char boundaries).
                        let cuts: Vec<usize> =
                            t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
                        let (i, j) = (cuts[rng.below(cuts.len())], cuts[rng.below(cuts.len())]);
                        s.push_str(if rng.chance(50) {
                            t
                        } else {
                            &t[i.min(j)..i.max(j)]
                        });
                    }
                    _ => {
                        let p = random_pool(rng);
                        push_random_char(rng, &mut s, p)
                    }
                }
            }
        }
        // Long runs of one kind.
        6 => {
            let unit = [
                "  ", " ", "\n", "0", "7", "a", "ab ", "\t ", "é", "中", "!", "'", " 1", "\u{2581}",
            ];
            let u = unit[rng.below(unit.len())];
            let max_len = if rng.chance(10) { 4000 } else { 200 };
            let n = 1 + rng.below(max_len);
            if rng.chance(50) {
                s.push('x');
            }
            for _ in 0..n {
                s.push_str(u);
            }
            if rng.chance(50) {
                push_random_char(rng, &mut s, POOLS[0]);
            }
        }
        // Mutate the previous input.
        _ => {
            s.push_str(prev);
            for _ in 0..1 + rng.below(4) {
                let cuts: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
                let at = cuts[rng.below(cuts.len())];
                match rng.below(3) {
                    0 => {
                        let mut c = String::new();
                        let p = random_pool(rng);
                        push_random_char(rng, &mut c, p);
                        s.insert_str(at, &c);
                    }
                    1 => {
                        if let Some(c) = s[at..].chars().next() {
                            s.replace_range(at..at + c.len_utf8(), "");
                        }
                    }
                    _ => s.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]),
                }
            }
        }
    }
    s
}

/// Statistics of a run over one tokenizer.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub inputs: u64,
    pub input_bytes: u64,
    pub tokens: u64,
    pub encode_time: Duration,
    pub max_time: Duration,
    pub max_time_input_len: usize,
    pub failures: Vec<String>,
}

/// A failure message small enough to print: the input (truncated) and what went wrong.
fn failure(name: &str, input: &str, what: String) -> String {
    let shown: String = input.chars().take(200).collect();
    format!("{name}: {what}\n  input ({} bytes): {shown:?}", input.len())
}

/// Checks one input against one tokenizer, adding to `st`.
pub fn check(name: &str, tok: &Tokenizer, input: &str, st: &mut Stats) {
    let n_vocab = tok.vocab_size() as u32;
    let t0 = Instant::now();
    let ids = tok.encode(input, false, false);
    let dt = t0.elapsed();
    st.inputs += 1;
    st.input_bytes += input.len() as u64;
    st.tokens += ids.len() as u64;
    st.encode_time += dt;
    if dt > st.max_time {
        st.max_time = dt;
        st.max_time_input_len = input.len();
    }
    if let Some(bad) = ids.iter().find(|&&id| id >= n_vocab) {
        st.failures
            .push(failure(name, input, format!("id {bad} out of range")));
        return;
    }
    let mut bytes = Vec::new();
    for &id in &ids {
        bytes.extend_from_slice(&tok.token_to_piece(id, false));
    }
    let expected: Option<Vec<u8>> = match tok.kind() {
        // Bytes whose alphabet character is not a token cannot be encoded: llama.cpp
        // drops them (SmolLM2, StarCoder and Falcon lack 14-28 of the 256, mostly bytes
        // that never occur in UTF-8 and lead bytes of 4-byte sequences).
        TokenizerKind::ByteLevelBpe(_) => {
            let missing = missing_byte_tokens(tok);
            Some(
                input
                    .bytes()
                    .filter(|&b| !missing[usize::from(b)])
                    .collect(),
            )
        }
        TokenizerKind::SentencePiece if !input.is_empty() => {
            Some(format!(" {input}").replace('\u{2581}', " ").into_bytes())
        }
        TokenizerKind::SentencePiece => Some(Vec::new()),
        // Normalizers may change the text; no exact expectation.
        TokenizerKind::HuggingFace => None,
    };
    if expected.is_some_and(|e| e != bytes) {
        st.failures.push(failure(
            name,
            input,
            format!(
                "round trip differs: ids {:?} decode to {:?}",
                &ids[..ids.len().min(40)],
                String::from_utf8_lossy(&bytes)
            ),
        ));
        return;
    }
    // Streaming decode prints what a lossy decode of all bytes prints.
    let mut stream = tok.stream();
    let mut streamed = String::new();
    for &id in &ids {
        streamed.push_str(&stream.push(id));
    }
    streamed.push_str(&stream.finish());
    if streamed != String::from_utf8_lossy(&bytes) {
        st.failures.push(failure(
            name,
            input,
            "streamed text differs from lossy decode".to_string(),
        ));
        return;
    }
    // With special parsing and BOS/EOS: only range checks (the text may contain tokens).
    let ids2 = tok.encode(input, true, true);
    if let Some(bad) = ids2.iter().find(|&&id| id >= n_vocab) {
        st.failures.push(failure(
            name,
            input,
            format!("id {bad} out of range with parse_special"),
        ));
        return;
    }
    if tok.add_bos() && !input.is_empty() && ids2.first() != tok.bos().as_ref() {
        st.failures.push(failure(
            name,
            input,
            "missing BOS with add_special".to_string(),
        ));
    }
}

/// GPT-2 byte-level alphabet: the character standing for byte `b`.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let k = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + k).unwrap_or('\u{FFFD}')
}

/// For each byte: true when its alphabet character is not a token of `tok`.
pub fn missing_byte_tokens(tok: &Tokenizer) -> [bool; 256] {
    let mut m = [false; 256];
    for b in 0..=255u8 {
        m[usize::from(b)] = tok.token_id(&byte_char(b).to_string()).is_none();
    }
    m
}

/// Control and user-defined token texts of `tok`, to mix into inputs.
pub fn special_texts(tok: &Tokenizer) -> Vec<String> {
    (0..tok.vocab_size() as u32)
        .filter(|&id| tok.is_control(id) || tok.is_eog(id))
        .filter_map(|id| tok.token_text(id).map(str::to_string))
        .take(4000)
        .collect()
}

/// 100 KB inputs with no spaces, each encoded once: (description, bytes, tokens, time).
pub fn long_inputs(tok: &Tokenizer) -> Vec<(&'static str, usize, usize, Duration)> {
    const N: usize = 100_000;
    let mut rng = Rng::new(7);
    let mut cases: Vec<(&'static str, String)> = vec![
        ("letters", "abcdefghij".repeat(N / 10)),
        ("one letter", "a".repeat(N)),
        ("digits", "0123456789".repeat(N / 10)),
        ("punctuation", "!?.,;:-=+*".repeat(N / 10)),
        ("CJK", "中文字符测试".repeat(N / 18)),
        ("emoji", "😀🦙🚀".repeat(N / 12)),
        ("newlines", "\n".repeat(N)),
        ("spaces", " ".repeat(N)),
    ];
    let mut random = String::new();
    while random.len() < N {
        push_random_char(&mut rng, &mut random, POOLS[13]);
    }
    cases.push(("random non-ASCII", random));
    cases
        .into_iter()
        .map(|(what, s)| {
            let t0 = Instant::now();
            let ids = tok.encode(&s, false, false);
            (what, s.len(), ids.len(), t0.elapsed())
        })
        .collect()
}
