//! Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) behind the same API, through
//! the `tokenizers` crate (pure Rust: `fancy-regex` instead of Oniguruma).
//!
//! Encoding is Hugging Face's: `add_special` is `add_special_tokens` (the file's
//! post-processor decides what is added), and with `parse_special` off the added special
//! tokens are matched as plain text (`encode_special_tokens`), like llama.cpp's control
//! tokens. Decoding uses per-token pieces computed once, in the style the file's decoder
//! names: byte-level (GPT-2 alphabet), SentencePiece (`▁`, `<0xAB>`) or plain text.

use std::path::Path;

use serde_json::Value;

use crate::attr;
use crate::hash::FxHashMap;
use crate::vocab::{Algo, Ids, Vocab, EOG_TEXTS, EOT_TEXTS};
use crate::TokenizerError;

/// The largest tokenizer.json accepted (the biggest real ones are ~35 MB).
const MAX_FILE_BYTES: u64 = 256 << 20;

pub(crate) struct HfModel {
    /// Recognises added special tokens in the text.
    parse: tokenizers::Tokenizer,
    /// Treats added special tokens in the text as plain text.
    plain: tokenizers::Tokenizer,
}

impl HfModel {
    pub(crate) fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, String> {
        let tk = if parse_special {
            &self.parse
        } else {
            &self.plain
        };
        tk.encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PieceStyle {
    ByteLevel,
    SentencePiece,
    Plain,
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    let err = |message: String| TokenizerError::HfFile {
        path: path.to_path_buf(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(err(format!(
            "{len} bytes, more than the {MAX_FILE_BYTES} accepted"
        )));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// A token given as `"text"` or `{"content": "text", ...}` in tokenizer_config.json.
fn token_content(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

/// Which piece style the `decoder` section asks for.
fn piece_style(json: &Value) -> PieceStyle {
    let dec = json
        .get("decoder")
        .map(Value::to_string)
        .unwrap_or_default();
    let pre = json
        .get("pre_tokenizer")
        .map(Value::to_string)
        .unwrap_or_default();
    if dec.contains("\"ByteLevel\"") || (dec.is_empty() && pre.contains("\"ByteLevel\"")) {
        PieceStyle::ByteLevel
    } else if dec.contains("\"ByteFallback\"")
        || dec.contains("\"Metaspace\"")
        || dec.contains('\u{2581}')
    {
        PieceStyle::SentencePiece
    } else {
        PieceStyle::Plain
    }
}

impl Vocab {
    /// Loads `tokenizer_json` and, when given, `tokenizer_config` (for `bos_token`,
    /// `eos_token` and `chat_template`).
    pub(crate) fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<Vocab, TokenizerError> {
        let err = |path: &Path, message: String| TokenizerError::HfFile {
            path: path.to_path_buf(),
            message,
        };
        let bytes = read_capped(tokenizer_json)?;
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|e| err(tokenizer_json, e.to_string()))?;
        let mut parse = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| err(tokenizer_json, e.to_string()))?;
        // Truncation and padding are request-time concerns; they are also the usual
        // sources of encode errors.
        parse
            .with_truncation(None)
            .map_err(|e| err(tokenizer_json, e.to_string()))?;
        parse.with_padding(None);
        let mut plain = parse.clone();
        plain.set_encode_special_tokens(true);

        let config: Option<Value> = match tokenizer_config {
            Some(p) => {
                let b = read_capped(p)?;
                Some(serde_json::from_slice(&b).map_err(|e| err(p, e.to_string()))?)
            }
            None => None,
        };

        let n = parse.get_vocab_size(true);
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        if n > crate::vocab::MAX_TOKENS {
            return Err(TokenizerError::TooManyTokens {
                n_tokens: n,
                max: crate::vocab::MAX_TOKENS,
            });
        }
        let n_tokens = n as u32;
        let added = parse.get_added_tokens_decoder();
        let style = piece_style(&json);

        let mut texts = Vec::with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        let mut strings: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
        let mut pieces: Vec<Box<[u8]>> = Vec::with_capacity(n);
        for id in 0..n_tokens {
            let text = parse.id_to_token(id).unwrap_or_default();
            let (a, piece) = match added.get(&id) {
                Some(t) if t.special => (attr::CONTROL, text.as_bytes().to_vec()),
                Some(_) => (attr::USER_DEFINED, text.as_bytes().to_vec()),
                None => (attr::NORMAL, normal_piece(style, &text)),
            };
            strings.insert(text.as_bytes().into(), id);
            texts.push(text.into_boxed_str());
            attrs.push(a);
            pieces.push(piece.into_boxed_slice());
        }

        let lookup = |t: &str| strings.get(t.as_bytes()).copied();
        let cfg = config.as_ref();
        let bos = token_content(cfg.and_then(|c| c.get("bos_token"))).and_then(lookup);
        let eos = token_content(cfg.and_then(|c| c.get("eos_token"))).and_then(lookup);
        let unk = token_content(cfg.and_then(|c| c.get("unk_token"))).and_then(lookup);
        let pad = token_content(cfg.and_then(|c| c.get("pad_token"))).and_then(lookup);
        let is_added = |id: &u32| added.contains_key(id);
        let eot = EOT_TEXTS.iter().filter_map(|t| lookup(t)).find(is_added);
        let eom = lookup("<|eom_id|>").filter(is_added);
        let mut eog: Vec<u32> = EOG_TEXTS
            .iter()
            .filter_map(|t| lookup(t))
            .filter(is_added)
            .collect();
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let chat_template = match cfg.and_then(|c| c.get("chat_template")) {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: the one called "default", else the first.
            Some(Value::Array(list)) => {
                let named = |name: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str)
                };
                named("default")
                    .or_else(|| {
                        list.first()
                            .and_then(|t| t.get("template"))
                            .and_then(Value::as_str)
                    })
                    .map(str::to_string)
            }
            _ => None,
        };

        // What `add_special` adds is the post-processor's business; report it by asking.
        let probe = parse
            .encode("", true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        let add_bos = bos.is_some() && probe.first().copied() == bos;
        let add_eos = eos.is_some() && probe.last().copied() == eos;

        Ok(Vocab {
            algo: Algo::Hf(Box::new(HfModel { parse, plain })),
            texts,
            scores: Vec::new(),
            attrs,
            strings,
            n_tokens,
            ids: Ids {
                bos,
                eos,
                eot,
                eom,
                unk,
                pad,
            },
            add_bos,
            add_eos,
            add_space_prefix: false,
            clean_spaces: false,
            eog,
            special_cache: Vec::new(),
            pieces,
            chat_template,
            warnings: Vec::new(),
        })
    }
}

/// The bytes of an ordinary (non-added) token.
fn normal_piece(style: PieceStyle, text: &str) -> Vec<u8> {
    match style {
        PieceStyle::ByteLevel => crate::decode::byte_level_decode(text),
        PieceStyle::SentencePiece => {
            let b = text.as_bytes();
            if b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' {
                return vec![crate::decode::byte_token_value(text)];
            }
            text.replace('\u{2581}', " ").into_bytes()
        }
        PieceStyle::Plain => text.as_bytes().to_vec(),
    }
}
