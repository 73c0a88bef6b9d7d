//! A GGUF vocabulary made ready to encode: token texts and attributes, special ids, the
//! end-of-generation set, and the algorithm-specific tables.
//!
//! Building applies llama.cpp's load-time rules (`llama_vocab::impl::load`) in its
//! order, because several of them change token attributes that encoding and decoding
//! depend on: e.g. a token whose text is `<|im_end|>` becomes a control token even if the
//! file calls it normal.

use std::ops::Range;

use crate::attr;
use crate::bpe::BpeModel;
use crate::hash::FxHashMap;
use crate::pretok::{pre_config, supported_names};
use crate::spm::SpmModel;
use crate::{TokenType, TokenizerError, VocabSpec};

/// The largest vocabulary accepted (ids are `u32`, llama.cpp's are `i32`).
pub const MAX_TOKENS: usize = 1 << 24;

/// The longest text `encode` accepts: symbol positions are `u32`, and a prompt of a GiB
/// is a mistake, not a prompt.
pub const MAX_TEXT_BYTES: usize = 1 << 30;

/// Texts that make a token the EOT token when `tokenizer.ggml.eot_token_id` is absent.
pub(crate) const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts of tokens llama.cpp always treats as end-of-generation.
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// The encoding algorithm and its tables.
pub(crate) enum Algo {
    /// Byte-level BPE (`tokenizer.ggml.model` = "gpt2").
    Bpe(Box<BpeModel>),
    /// SentencePiece-style BPE driven by token scores (`tokenizer.ggml.model` = "llama").
    Spm(Box<SpmModel>),
    /// A Hugging Face tokenizer.json, encoded by the `tokenizers` crate.
    #[cfg(feature = "hf")]
    Hf(Box<crate::hf::HfModel>),
}

/// Resolved special ids (after defaults, range checks and auto-detection).
#[derive(Clone, Debug, Default)]
pub(crate) struct Ids {
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eom: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) pad: Option<u32>,
}

pub(crate) struct Vocab {
    pub(crate) algo: Algo,
    pub(crate) texts: Vec<Box<str>>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u16>,
    /// Token text -> id (the last id when texts repeat, as llama.cpp's map keeps). For
    /// BPE it also interns merge strings that are not tokens, with ids >= `n_tokens`.
    pub(crate) strings: FxHashMap<Box<[u8]>, u32>,
    pub(crate) n_tokens: u32,
    pub(crate) ids: Ids,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) clean_spaces: bool,
    /// Sorted end-of-generation ids.
    pub(crate) eog: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which
    /// special tokens are split out of text.
    pub(crate) special_cache: Vec<u32>,
    /// Each token's bytes with special tokens rendered (llama.cpp's piece cache).
    pub(crate) pieces: Vec<Box<[u8]>>,
    pub(crate) chat_template: Option<String>,
    pub(crate) warnings: Vec<String>,
}

impl Vocab {
    pub(crate) fn from_spec(spec: VocabSpec) -> Result<Vocab, TokenizerError> {
        let VocabSpec {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            special,
            add_bos,
            add_eos,
            add_space_prefix,
            model_name,
            chat_template,
        } = spec;
        let mut warnings = Vec::new();

        let is_bpe = match model.as_str() {
            "gpt2" => true,
            "llama" => false,
            _ => return Err(TokenizerError::UnsupportedModel { model }),
        };
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        if n > MAX_TOKENS {
            return Err(TokenizerError::TooManyTokens {
                n_tokens: n,
                max: MAX_TOKENS,
            });
        }
        let n_tokens = n as u32;
        let check_len = |key: &'static str, len: usize| {
            if len < n {
                Err(TokenizerError::ArrayTooShort {
                    key,
                    len,
                    n_tokens: n,
                })
            } else {
                Ok(())
            }
        };
        if let Some(s) = &scores {
            check_len("tokenizer.ggml.scores", s.len())?;
        }
        if let Some(t) = &token_types {
            check_len("tokenizer.ggml.token_type", t.len())?;
        }

        // Per-algorithm defaults, then the file's flags.
        let pre_cfg = if is_bpe {
            if pre.is_none() {
                warnings.push(
                    "tokenizer.ggml.pre is missing: using the 'default' pre-tokenizer (llama.cpp \
                     warns that generation quality will be degraded)"
                        .to_string(),
                );
            }
            Some(pre_config(pre.as_deref()).ok_or_else(|| {
                TokenizerError::UnsupportedPreTokenizer {
                    pre: pre.clone().unwrap_or_default(),
                    supported: supported_names(),
                }
            })?)
        } else {
            None
        };
        let (mut add_bos_v, mut add_eos_v, mut add_space_prefix_v, clean_spaces) = match &pre_cfg {
            Some(c) => (c.add_bos, false, false, c.clean_spaces),
            None => (true, false, true, false),
        };
        if let Some(v) = add_space_prefix {
            add_space_prefix_v = v;
        }

        // Token texts, the lookup map, attributes.
        let mut texts: Vec<Box<str>> = Vec::with_capacity(n);
        let mut strings: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
        strings.reserve(n);
        for (i, t) in tokens.into_iter().enumerate() {
            let t = if t.is_empty() {
                warnings.push(format!("empty token at index {i}, renamed [EMPTY_{i}]"));
                format!("[EMPTY_{i}]")
            } else {
                t
            };
            strings.insert(t.as_bytes().into(), i as u32);
            texts.push(t.into_boxed_str());
        }
        let scores = scores.map(|mut s| {
            s.truncate(n);
            s
        });
        let scores = scores.unwrap_or_else(|| vec![0.0; n]);
        let mut attrs: Vec<u16> = match &token_types {
            Some(t) => t[..n]
                .iter()
                .map(|&v| attr::from_token_type(TokenType::from_i32(v)))
                .collect(),
            None => vec![attr::NORMAL; n],
        };

        // Special ids: per-algorithm defaults (dropped when out of range), then the file's
        // values (ignored when out of range, as llama.cpp does with a warning).
        let in_range = |id: u32| id < n_tokens;
        let mut default = |name: &str, id: Option<u32>| -> Option<u32> {
            match id {
                Some(i) if !in_range(i) => {
                    warnings.push(format!(
                        "default {name} id {i} is outside the vocabulary, disabled"
                    ));
                    None
                }
                other => other,
            }
        };
        let (d_bos, d_eos, d_unk) = if is_bpe {
            (Some(11), Some(11), None)
        } else {
            (Some(1), Some(2), Some(0))
        };
        let mut bos = default("bos", d_bos);
        let mut eos = default("eos", d_eos);
        let mut unk = default("unk", d_unk);
        let mut eot = None;
        let mut eom = None;
        let mut pad = None;
        let mut fim_pre = None;
        let mut fim_suf = None;
        let mut fim_mid = None;
        let mut fim_pad = None;
        let mut fim_rep = None;
        let mut fim_sep = None;
        for (name, slot, value) in [
            ("bos", &mut bos, special.bos),
            ("eos", &mut eos, special.eos),
            ("eot", &mut eot, special.eot),
            ("eom", &mut eom, special.eom),
            ("unk", &mut unk, special.unk),
            ("pad", &mut pad, special.pad),
            ("fim_pre", &mut fim_pre, special.fim_pre),
            ("fim_suf", &mut fim_suf, special.fim_suf),
            ("fim_mid", &mut fim_mid, special.fim_mid),
            ("fim_pad", &mut fim_pad, special.fim_pad),
            ("fim_rep", &mut fim_rep, special.fim_rep),
            ("fim_sep", &mut fim_sep, special.fim_sep),
        ] {
            match value {
                Some(id) if in_range(id) => *slot = Some(id),
                Some(id) => warnings.push(format!(
                    "tokenizer.ggml.{name}_token_id = {id} is outside the vocabulary ({n} tokens), ignored"
                )),
                None => {}
            }
        }
        if let Some(v) = add_bos {
            add_bos_v = v;
        }
        if let Some(v) = add_eos {
            add_eos_v = v;
        }

        // Auto-detect EOT/EOM/FIM tokens by text; each detected token becomes control.
        // llama.cpp walks its hash map, so when two candidates exist which one wins is
        // unspecified there; here the lowest id does.
        let unique_ids = |texts: &[Box<str>], strings: &FxHashMap<Box<[u8]>, u32>| -> Vec<u32> {
            (0..n_tokens)
                .filter(|&i| strings.get(texts[i as usize].as_bytes()) == Some(&i))
                .collect()
        };
        let unique = unique_ids(&texts, &strings);
        for &id in &unique {
            let text: &str = &texts[id as usize];
            let mut detect = |slot: &mut Option<u32>, list: &[&str]| {
                if slot.is_none() && list.contains(&text) {
                    *slot = Some(id);
                    attrs[id as usize] |= attr::CONTROL;
                }
            };
            detect(&mut eot, EOT_TEXTS);
            detect(&mut eom, &["<|eom_id|>"]);
            detect(&mut fim_pre, FIM_PRE_TEXTS);
            detect(&mut fim_suf, FIM_SUF_TEXTS);
            detect(&mut fim_mid, FIM_MID_TEXTS);
            detect(&mut fim_pad, FIM_PAD_TEXTS);
            detect(&mut fim_rep, FIM_REP_TEXTS);
            detect(&mut fim_sep, FIM_SEP_TEXTS);
        }
        // Control tokens named "unused" are unused.
        for &id in &unique {
            let a = &mut attrs[id as usize];
            if *a & attr::CONTROL != 0 && texts[id as usize].contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        // The end-of-generation set.
        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for &id in &unique {
            let text: &str = &texts[id as usize];
            if EOG_TEXTS.contains(&text) {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these always render.
        for &id in &unique {
            if ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]
                .contains(&&*texts[id as usize])
            {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let find_eog =
            |eog: &[u32], t: &str| eog.iter().copied().find(|&id| &*texts[id as usize] == t);
        // Harmony / solar-open: "<|end|>" ends a message, not the generation.
        let has_return = find_eog(&eog, "<|return|>").is_some();
        let has_call =
            find_eog(&eog, "<|call|>").is_some() || find_eog(&eog, "<|calls|>").is_some();
        let has_flush = find_eog(&eog, "<|flush|>").is_some();
        if let Some(end) = find_eog(&eog, "<|end|>") {
            if has_call && (has_return || has_flush) {
                eog.retain(|&i| i != end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        // Gemma 4 / PLaMo: "</s>" is an ordinary token there.
        let has_normal_s_marker = find_eog(&eog, "<|tool_response>").is_some()
            || find_eog(&eog, "<|plamo:eos|>").is_some();
        if let Some(s) = find_eog(&eog, "</s>") {
            if has_normal_s_marker {
                eog.retain(|&i| i != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        // Special tokens in splitting order: longest text first (stable, so equal
        // lengths keep id order; llama.cpp's unstable sort leaves that unspecified).
        let mut special_cache: Vec<u32> = (0..n_tokens)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_cache.sort_by_key(|&i| std::cmp::Reverse(texts[i as usize].len()));

        // Per-model attributes keyed on general.name (llama.cpp sets them after its piece
        // cache; they only affect how special tokens are split out of text).
        let lower_name = model_name.as_deref().unwrap_or("").to_lowercase();
        let lookup = |t: &str| strings.get(t.as_bytes()).copied().filter(|&i| i < n_tokens);
        if lower_name.contains("phi-3") || lower_name.contains("phi3") {
            for &id in &special_cache {
                attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(id) = lookup("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = lookup(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        } else if lower_name.contains("modern-bert") {
            if let Some(id) = lookup("[MASK]") {
                attrs[id as usize] |= attr::LSTRIP;
            }
        }

        let algo = match pre_cfg {
            Some(cfg) => {
                let merges = merges.ok_or(TokenizerError::MissingMerges)?;
                Algo::Bpe(Box::new(BpeModel::new(
                    cfg,
                    &merges,
                    &mut strings,
                    n_tokens,
                )))
            }
            None => Algo::Spm(Box::new(SpmModel::new(&strings, n_tokens))),
        };

        let ids = Ids {
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
        };
        if add_bos_v && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_bos_token",
                what: "BOS",
            });
        }
        if add_eos_v && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_eos_token",
                what: "EOS",
            });
        }

        let mut vocab = Vocab {
            algo,
            texts,
            scores,
            attrs,
            strings,
            n_tokens,
            ids,
            add_bos: add_bos_v,
            add_eos: add_eos_v,
            add_space_prefix: add_space_prefix_v,
            clean_spaces,
            eog,
            special_cache,
            pieces: Vec::new(),
            chat_template,
            warnings,
        };
        vocab.pieces = (0..n_tokens)
            .map(|id| vocab.render_piece(id).into_boxed_slice())
            .collect();
        Ok(vocab)
    }

    /// The id of a token text, if it is a token.
    #[inline]
    pub(crate) fn text_to_token(&self, text: &[u8]) -> Option<u32> {
        self.strings
            .get(text)
            .copied()
            .filter(|&i| i < self.n_tokens)
    }

    #[inline]
    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// Token ids of `text` (llama.cpp's `llama_tokenize`). Only the Hugging Face backend
    /// can fail.
    pub(crate) fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(TokenizerError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        #[cfg(feature = "hf")]
        if let Algo::Hf(hf) = &self.algo {
            return hf
                .encode(text, add_special, parse_special)
                .map_err(|message| TokenizerError::Encode { message });
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        if add_special && self.add_bos {
            out.extend(self.ids.bos);
        }
        match &self.algo {
            Algo::Spm(spm) => {
                // A space is put before the first text and before text that follows a
                // special token, when the vocabulary asks for one.
                let mut prev_special = true;
                let mut buf = String::new();
                for frag in &fragments {
                    match frag {
                        Fragment::Text(r) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push(' ');
                            }
                            buf.push_str(&text[r.clone()]);
                            spm.encode(self, &buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                        }
                    }
                }
            }
            Algo::Bpe(bpe) => {
                let mut words = Vec::new();
                for frag in &fragments {
                    match frag {
                        Fragment::Text(r) => {
                            bpe.encode(self, &text[r.clone()], &mut words, &mut out)
                        }
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
            #[cfg(feature = "hf")]
            Algo::Hf(_) => {}
        }
        if add_special && self.add_eos {
            out.extend(self.ids.eos);
        }
        Ok(out)
    }

    /// Splits special tokens out of `text` (llama.cpp's `tokenizer_st_partition`): for
    /// each special token, longest first, every occurrence in every remaining text
    /// fragment becomes a token fragment. Control and unknown tokens are only recognised
    /// when `parse_special`; user-defined tokens always are.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0..text.len())];
        let mut next = Vec::new();
        let bytes = text.as_bytes();
        for &id in &self.special_cache {
            let a = self.attr(id);
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let tok: &str = &self.texts[id as usize];
            // Cheap rejection: most special tokens do not occur in most prompts.
            if !text.contains(tok) {
                continue;
            }
            next.clear();
            for frag in frags.drain(..) {
                let Fragment::Text(r) = frag else {
                    next.push(frag);
                    continue;
                };
                let (mut start, end) = (r.start, r.end);
                while let Some(found) = text[start..end].find(tok) {
                    let m = start + found;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start..left_end));
                    }
                    next.push(Fragment::Token(id));
                    start = m + tok.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && is_c_space(bytes[start]) {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Fragment::Text(start..end));
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    /// Bytes of token `id` with special tokens rendered as their text
    /// (`llama_token_to_piece(special = true)`).
    fn render_piece(&self, id: u32) -> Vec<u8> {
        let a = self.attr(id);
        let text: &str = &self.texts[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match &self.algo {
                Algo::Spm(_) => text.replace('\u{2581}', " ").into_bytes(),
                _ => crate::decode::byte_level_decode(text),
            };
        }
        if a & attr::BYTE != 0 {
            return vec![crate::decode::byte_token_value(text)];
        }
        Vec::new()
    }
}

/// C `isspace` in the "C" locale: the bytes llama.cpp strips around LSTRIP/RSTRIP tokens.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// A piece of the input: text still to be tokenized, or a special token found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}
