//! vtpu-tokenizer: text <-> token ids, reproducing llama.cpp's token ids exactly.
//!
//! Two sources, one [`Tokenizer`]:
//! - GGUF tokenizer metadata ([`VocabSpec`], filled from `tokenizer.ggml.*`): byte-level
//!   BPE ("gpt2") with llama.cpp's pre-tokenizers, and SentencePiece-style BPE ("llama")
//!   with scores and byte fallback. The algorithms follow llama.cpp's `llama-vocab.cpp`
//!   and `unicode.cpp` (the copy vendored in llama-cpp-python 0.3.36) decision for
//!   decision, and are checked against its `ggml-vocab-*.gguf` test vectors, its recorded
//!   outputs for real models (`testdata/llamacpp`), and libllama itself on random text
//!   (`examples/tokenize_jsonl.rs` + `scripts/compare_llamacpp.py`).
//! - A Hugging Face `tokenizer.json` (feature `hf`), through the `tokenizers` crate.
//!
//! The pre-tokenizer regexes are implemented by hand (`pretok`), not with a regex crate:
//! llama.cpp itself runs hand-written splitters for GPT-2, Llama 3 and Qwen2, and runs
//! the others through `std::regex` on a category-collapsed copy of the text; matching
//! its ids means matching those exact semantics (including where they differ from the
//! regex as written), which small explicit matchers do more plainly than a regex engine.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = vtpu_modelfile::gguf::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = vtpu_tokenizer::Tokenizer::from_gguf(&file)?;
//! let ids = tok.encode("<|im_start|>user\nHi<|im_end|>\n", true, true);
//! let mut out = tok.stream();
//! for &id in &ids {
//!     print!("{}", out.push(id));
//! }
//! print!("{}", out.finish());
//! # Ok(())
//! # }
//! ```

mod attr;
mod bpe;
mod decode;
mod error;
mod gguf;
mod hash;
#[cfg(feature = "hf")]
mod hf;
mod pretok;
mod spec;
mod spm;
mod unicode;
mod vocab;

pub use decode::{DetokenizeOptions, Utf8Stream};
pub use error::TokenizerError;
pub use pretok::PreTokenizerKind;
pub use spec::{SpecialIds, TokenType, VocabSpec};
pub use vocab::{MAX_TEXT_BYTES, MAX_TOKENS};

use vocab::{Algo, Vocab};

/// Which algorithm a tokenizer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE from GGUF, with its pre-tokenizer.
    ByteLevelBpe(PreTokenizerKind),
    /// SentencePiece-style BPE from GGUF.
    SentencePiece,
    /// A Hugging Face tokenizer.json.
    HuggingFace,
}

/// A tokenizer: encode text to ids, decode ids to bytes.
pub struct Tokenizer {
    vocab: Box<Vocab>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos())
            .field("eos", &self.eos())
            .finish()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from GGUF-style metadata, applying llama.cpp's load rules
    /// (default special ids, add_bos defaults per pre-tokenizer, control/EOG detection by
    /// token text).
    pub fn from_spec(spec: VocabSpec) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            vocab: Box::new(Vocab::from_spec(spec)?),
        })
    }

    /// Builds a tokenizer from a GGUF file's tokenizer metadata.
    pub fn from_gguf(file: &vtpu_modelfile::gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_spec(VocabSpec::from_gguf(file)?)
    }

    /// Loads a Hugging Face `tokenizer.json`, with `tokenizer_config.json` when given
    /// (BOS/EOS/UNK/PAD token names and the chat template come from it).
    #[cfg(feature = "hf")]
    pub fn from_hf_files(
        tokenizer_json: &std::path::Path,
        tokenizer_config: Option<&std::path::Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            vocab: Box::new(Vocab::from_hf_files(tokenizer_json, tokenizer_config)?),
        })
    }

    /// Loads `dir/tokenizer.json` and, if present, `dir/tokenizer_config.json`.
    #[cfg(feature = "hf")]
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Tokenizer, TokenizerError> {
        let config = dir.join("tokenizer_config.json");
        Tokenizer::from_hf_files(
            &dir.join("tokenizer.json"),
            config.exists().then_some(config.as_path()),
        )
    }

    /// Token ids of `text`, as `llama_tokenize(text, add_special, parse_special)`:
    /// - `add_special`: add BOS (and EOS) when the vocabulary says to;
    /// - `parse_special`: recognise control tokens written in the text (`<|im_end|>`)
    ///   as those tokens; user-defined tokens are always recognised.
    ///
    /// When encoding fails (text over [`MAX_TEXT_BYTES`], or an error inside the Hugging
    /// Face backend) this returns no ids; [`try_encode`](Self::try_encode) reports why.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.vocab
            .encode(text, add_special, parse_special)
            .unwrap_or_default()
    }

    /// [`encode`](Self::encode), with the Hugging Face backend's errors reported.
    pub fn try_encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.vocab.encode(text, add_special, parse_special)
    }

    /// The bytes token `id` stands for: byte-level BPE pieces mapped back through the
    /// GPT-2 alphabet, SentencePiece `▁` as a space and `<0xAB>` as that byte. Control
    /// and unknown tokens render as their text only when `render_special`; otherwise,
    /// and for ids outside the vocabulary, the piece is empty.
    pub fn token_to_piece(&self, id: u32, render_special: bool) -> Vec<u8> {
        self.vocab.piece(id, render_special).to_vec()
    }

    /// The pieces of `ids` joined (control tokens omitted), as text; invalid UTF-8
    /// becomes U+FFFD. This is what printing the tokens one by one shows: no leading
    /// space removal or space clean-up (see [`detokenize`](Self::detokenize)).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.vocab.piece(id, false));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// llama.cpp's `llama_detokenize`, byte for byte.
    pub fn detokenize(&self, ids: &[u32], opts: DetokenizeOptions) -> Vec<u8> {
        self.vocab.detokenize(ids, opts)
    }

    /// A decoder for printing tokens as they are generated.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            utf8: Utf8Stream::new(),
            render_special: false,
        }
    }

    /// Whether `id` ends generation (EOS, EOT, EOM, and tokens such as `<|im_end|>` or
    /// `<|endoftext|>` that llama.cpp treats so).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.ids.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.ids.eos
    }

    /// End-of-turn token (`<|im_end|>`, `<|eot_id|>`, ...), from the file or by text.
    pub fn eot(&self) -> Option<u32> {
        self.vocab.ids.eot
    }

    pub fn eom(&self) -> Option<u32> {
        self.vocab.ids.eom
    }

    pub fn unk(&self) -> Option<u32> {
        self.vocab.ids.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.vocab.ids.pad
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Number of tokens (ids are `0..vocab_size()`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.n_tokens as usize
    }

    /// The stored text of token `id` (byte-level BPE texts are in the GPT-2 alphabet).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(|t| &**t)
    }

    /// The id of the token whose stored text is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.text_to_token(text.as_bytes())
    }

    /// Whether `id` is a control token (rendered only on request, split out of text only
    /// with `parse_special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    pub fn kind(&self) -> TokenizerKind {
        match &self.vocab.algo {
            Algo::Bpe(b) => TokenizerKind::ByteLevelBpe(b.kind),
            Algo::Spm(_) => TokenizerKind::SentencePiece,
            #[cfg(feature = "hf")]
            Algo::Hf(_) => TokenizerKind::HuggingFace,
        }
    }

    /// `tokenizer.chat_template`, when the metadata had one.
    pub fn chat_template(&self) -> Option<&str> {
        self.vocab.chat_template.as_deref()
    }

    /// Things llama.cpp would log as warnings while loading this vocabulary (missing
    /// pre-tokenizer, out-of-range special ids, renamed empty tokens).
    pub fn warnings(&self) -> &[String] {
        &self.vocab.warnings
    }
}

// Tokenizers are shared across threads (a server encodes requests concurrently).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};

/// Prints tokens as they come: each [`push`](Self::push) returns the text completed so
/// far, holding back bytes of a character split across tokens.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    utf8: Utf8Stream,
    render_special: bool,
}

impl StreamDecoder<'_> {
    /// Render control tokens as their text (off by default, as in llama-cli).
    pub fn render_special(mut self, on: bool) -> Self {
        self.render_special = on;
        self
    }

    /// Adds token `id`; returns the text that is now complete.
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tok.vocab.piece(id, self.render_special);
        self.utf8.push(piece)
    }

    /// Flushes held-back bytes (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}
