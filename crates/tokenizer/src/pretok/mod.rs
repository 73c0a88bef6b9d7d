//! Pre-tokenizers of byte-level BPE vocabularies: how text is cut into words before the
//! BPE merges run inside each word. Selected by `tokenizer.ggml.pre`.

mod custom;
mod pattern;

use std::ops::Range;

use custom::Custom;
use pattern::{Class, Pattern};

use crate::unicode::{self, CpFlags, LETTER, NUMBER, PUNCTUATION};

/// The text as codepoints with their classes and byte offsets, computed once per
/// fragment and shared by all split steps.
pub(crate) struct CodepointText {
    pub(crate) cps: Vec<u32>,
    pub(crate) flags: Vec<CpFlags>,
    /// Byte offset of each codepoint, plus the text length at the end.
    pub(crate) byte_starts: Vec<usize>,
}

impl CodepointText {
    pub(crate) fn new(text: &str) -> CodepointText {
        let n = text.len();
        let mut cps = Vec::with_capacity(n);
        let mut flags = Vec::with_capacity(n);
        let mut byte_starts = Vec::with_capacity(n + 1);
        for (i, c) in text.char_indices() {
            let cp = u32::from(c);
            cps.push(cp);
            flags.push(unicode::flags(cp));
            byte_starts.push(i);
        }
        byte_starts.push(n);
        CodepointText {
            cps,
            flags,
            byte_starts,
        }
    }
}

/// The pre-tokenizer families this crate implements. Each is one of llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_*` regex lists; several `tokenizer.ggml.pre` names share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// llama.cpp's fallback list (`tokenizer.ggml.pre` = "default" or absent).
    Default,
    /// GPT-2's regex.
    Gpt2,
    /// Llama 3's regex.
    Llama3,
    /// Qwen2's regex (Llama 3's with single digits).
    Qwen2,
    /// Qwen3.5's regex (Qwen2's with combining marks in letter runs).
    Qwen35,
    /// StarCoder / SmolLM: single digits, then GPT-2's regex.
    Starcoder,
    /// Falcon.
    Falcon,
    /// DeepSeek LLM.
    DeepseekLlm,
    /// DeepSeek Coder.
    DeepseekCoder,
}

/// What a `tokenizer.ggml.pre` name selects, besides the splitting itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    pub(crate) kind: PreTokenizerKind,
    /// A word that is a whole token is emitted as that token without merging.
    pub(crate) ignore_merges: bool,
    /// llama.cpp's detokenizer tidies spaces before punctuation.
    pub(crate) clean_spaces: bool,
    /// The default for `add_bos_token` when the file does not say.
    pub(crate) add_bos: bool,
}

/// `tokenizer.ggml.pre` names accepted, with the settings llama.cpp's loader gives them.
/// Only names whose splitting is one of the families above (and so covered by a test
/// vocabulary) are listed; anything else is an error rather than a silent misfit.
const PRE_NAMES: &[(&str, PreTokenizerKind, bool, bool, bool)] = {
    use PreTokenizerKind::*;
    // (name, kind, ignore_merges, clean_spaces, add_bos)
    &[
        ("default", Default, false, true, false),
        ("llama3", Llama3, true, true, true),
        ("llama-v3", Llama3, true, true, true),
        ("llama-bpe", Llama3, true, true, true),
        ("falcon3", Llama3, true, true, true),
        ("falcon-h1", Llama3, true, true, true),
        ("pixtral", Llama3, true, true, true),
        ("midm-2.0", Llama3, true, true, true),
        ("lfm2", Llama3, true, true, true),
        ("jina-v5-nano", Llama3, true, true, true),
        ("dbrx", Llama3, false, true, false),
        ("smaug-bpe", Llama3, false, true, false),
        ("deepseek-llm", DeepseekLlm, false, false, false),
        ("deepseek-coder", DeepseekCoder, false, false, false),
        ("falcon", Falcon, false, true, false),
        ("mpt", Gpt2, false, true, false),
        ("gpt-2", Gpt2, false, true, false),
        ("phi-2", Gpt2, false, true, false),
        ("jina-es", Gpt2, false, true, false),
        ("jina-de", Gpt2, false, true, false),
        ("gigachat", Gpt2, false, true, false),
        ("jina-v2-es", Gpt2, false, true, false),
        ("jina-v2-de", Gpt2, false, true, false),
        ("a.x-4.0", Gpt2, false, true, false),
        ("mellum", Gpt2, false, true, false),
        ("modern-bert", Gpt2, false, true, false),
        ("olmo", Gpt2, false, true, false),
        ("jais", Gpt2, false, true, false),
        ("exaone4", Gpt2, false, true, false),
        ("trillion", Gpt2, false, false, false),
        ("granite-docling", Gpt2, false, false, false),
        ("starcoder", Starcoder, false, true, false),
        ("refact", Starcoder, false, true, false),
        ("command-r", Starcoder, false, false, false),
        ("smollm", Starcoder, false, false, false),
        ("codeshell", Starcoder, false, true, false),
        ("exaone", Starcoder, false, true, false),
        ("minerva-7b", Starcoder, false, true, false),
        ("mellum2", Starcoder, false, true, false),
        ("qwen2", Qwen2, false, false, false),
        ("deepseek-r1-qwen", Qwen2, false, false, false),
        ("kormo", Qwen2, false, false, false),
        ("f2llmv2", Qwen2, false, false, false),
        ("megrez", Qwen2, false, true, false),
        ("stablelm2", Qwen2, false, true, false),
        ("hunyuan", Qwen2, false, false, false),
        ("solar-open", Qwen2, false, false, false),
        ("grok-2", Qwen2, false, false, false),
        ("qwen35", Qwen35, false, false, false),
    ]
};

/// The settings for `tokenizer.ggml.pre` = `name`, if supported. No name (the key is
/// absent) means "default", as in llama.cpp.
pub(crate) fn pre_config(name: Option<&str>) -> Option<PreConfig> {
    let name = name.unwrap_or("default");
    PRE_NAMES.iter().find(|e| e.0 == name).map(
        |&(_, kind, ignore_merges, clean_spaces, add_bos)| PreConfig {
            kind,
            ignore_merges,
            clean_spaces,
            add_bos,
        },
    )
}

/// The accepted names, for error messages.
pub(crate) fn supported_names() -> String {
    PRE_NAMES.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")
}

/// DeepSeek LLM's letter class, `[A-Za-zµÀ-ÖØ-öø-ƺ...]` in its tokenizer.json.
const DEEPSEEK_LLM_LETTERS: &str = "A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}";

enum Step {
    Custom(Custom),
    Pattern(Pattern),
}

/// A pre-tokenizer ready to split text: the steps of its regex list, applied in order,
/// each one splitting the words the previous one produced.
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

impl PreTokenizer {
    pub(crate) fn new(kind: PreTokenizerKind) -> PreTokenizer {
        use PreTokenizerKind as K;
        let cats = |cats: u16, ascii: &'static [u8]| Class::Cats { cats, ascii };
        // The class texts below are bracket contents of the models' tokenizer.json
        // regexes (data, not code), with non-ASCII characters written as escapes.
        let cr_lf = || Class::parse_brackets("\\r\\n");
        // [一-龥ࠀ-一가-퟿]
        let cjk = || Class::parse_brackets("\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}");
        let steps = match kind {
            K::Default => vec![
                // [\p{P}\$\+<=>\^~\|]+
                Step::Pattern(Pattern::plus(cats(PUNCTUATION, b"$+<=>^~|"))),
                Step::Custom(Custom::Gpt2),
                // \p{N}+
                Step::Pattern(Pattern::plus(cats(NUMBER, b""))),
                // [0-9][0-9][0-9]
                Step::Pattern(Pattern::Run { class: Class::parse_brackets("0-9"), min: 3, max: 3 }),
            ],
            K::Gpt2 => vec![Step::Custom(Custom::Gpt2)],
            K::Llama3 => vec![Step::Custom(Custom::Llama3)],
            K::Qwen2 => vec![Step::Custom(Custom::Qwen2)],
            K::Qwen35 => vec![Step::Custom(Custom::Qwen35)],
            K::Starcoder => vec![
                // \p{N}
                Step::Pattern(Pattern::one(cats(NUMBER, b""))),
                Step::Custom(Custom::Gpt2),
            ],
            K::Falcon => vec![
                // [\p{P}\$\+<=>\^~\|`]+
                Step::Pattern(Pattern::plus(cats(PUNCTUATION, b"$+<=>^~|`"))),
                Step::Custom(Custom::Gpt2),
                // [0-9][0-9][0-9]
                Step::Pattern(Pattern::Run { class: Class::parse_brackets("0-9"), min: 3, max: 3 }),
            ],
            K::DeepseekLlm => vec![
                Step::Pattern(Pattern::one(cr_lf())),
                // \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (Latin, Greek, Cyrillic, ... letters), escaped:
                // several of these characters change under Unicode normalization
                // (U+212A KELVIN SIGN becomes "K"), which would silently widen a range.
                Step::Pattern(Pattern::OptSpaceRun { class: Class::parse_brackets(DEEPSEEK_LLM_LETTERS) }),
                // \s?[!-/:-~！-／：-～‘-‟　-。]+
                Step::Pattern(Pattern::OptSpaceRun {
                    class: Class::parse_brackets("!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}"),
                }),
                Step::Pattern(Pattern::TrailingSpace),
                Step::Pattern(Pattern::plus(cjk())),
                // \p{N}+
                Step::Pattern(Pattern::plus(cats(NUMBER, b""))),
            ],
            K::DeepseekCoder => vec![
                Step::Pattern(Pattern::one(cr_lf())),
                // \s?\p{L}+
                Step::Pattern(Pattern::OptSpaceRun { class: cats(LETTER, b"") }),
                // \s?\p{P}+
                Step::Pattern(Pattern::OptSpaceRun { class: cats(PUNCTUATION, b"") }),
                Step::Pattern(Pattern::plus(cjk())),
                // \p{N}
                Step::Pattern(Pattern::one(cats(NUMBER, b""))),
            ],
        };
        PreTokenizer { steps }
    }

    /// Cuts `text` into words, appended to `words` as byte ranges of `text`. The words
    /// cover the text, in order.
    pub(crate) fn split(&self, text: &str, words: &mut Vec<Range<usize>>) {
        if text.is_empty() {
            return;
        }
        let ct = CodepointText::new(text);
        let mut offsets = vec![ct.cps.len()];
        let mut next = Vec::new();
        for step in &self.steps {
            next.clear();
            match step {
                Step::Custom(c) => c.split(&ct, &offsets, &mut next),
                Step::Pattern(p) => p.split(&ct, &offsets, &mut next),
            }
            std::mem::swap(&mut offsets, &mut next);
        }
        let mut cp = 0;
        for len in offsets {
            words.push(ct.byte_starts[cp]..ct.byte_starts[cp + len]);
            cp += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(kind: PreTokenizerKind, text: &str) -> Vec<&str> {
        let mut w = Vec::new();
        PreTokenizer::new(kind).split(text, &mut w);
        w.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_splits_like_its_regex() {
        assert_eq!(
            words(PreTokenizerKind::Gpt2, "Hello world's  end!!"),
            ["Hello", " world", "'s", " ", " end", "!!"]
        );
        // A whitespace run keeps its last space for the next word, except at the end.
        assert_eq!(
            words(PreTokenizerKind::Gpt2, "a   b   "),
            ["a", "  ", " b", "   "]
        );
        assert_eq!(
            words(PreTokenizerKind::Gpt2, "x 123 4"),
            ["x", " 123", " 4"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines_together() {
        assert_eq!(
            words(PreTokenizerKind::Llama3, "1234567"),
            ["123", "456", "7"]
        );
        assert_eq!(
            words(PreTokenizerKind::Llama3, "a \n\n b"),
            ["a", " \n\n", " b"]
        );
        assert_eq!(
            words(PreTokenizerKind::Llama3, "I'VE (x)"),
            ["I", "'VE", " (", "x", ")"]
        );
    }

    #[test]
    fn qwen2_splits_single_digits() {
        assert_eq!(words(PreTokenizerKind::Qwen2, "ab12"), ["ab", "1", "2"]);
    }

    #[test]
    fn default_list_isolates_punctuation_and_digit_triples() {
        assert_eq!(
            words(PreTokenizerKind::Default, "a+b 12345"),
            ["a", "+", "b", " ", "123", "45"]
        );
    }

    #[test]
    fn deepseek_llm_classes() {
        // The ideographic space is whitespace, not a member of the punctuation range.
        assert_eq!(
            words(PreTokenizerKind::DeepseekLlm, "Ab,\u{3000}c  "),
            ["Ab", ",", "\u{3000}c", "  "]
        );
    }

    #[test]
    fn words_cover_the_text() {
        let text = "  héllo\u{00A0}wörld\r\n\t3.14 — 'tis 😀😀 中文  ";
        for kind in [
            PreTokenizerKind::Default,
            PreTokenizerKind::Gpt2,
            PreTokenizerKind::Llama3,
            PreTokenizerKind::Qwen2,
            PreTokenizerKind::Qwen35,
            PreTokenizerKind::Starcoder,
            PreTokenizerKind::Falcon,
            PreTokenizerKind::DeepseekLlm,
            PreTokenizerKind::DeepseekCoder,
        ] {
            let w = words(kind, text);
            assert!(w.iter().all(|w| !w.is_empty()), "{kind:?}: empty word");
            assert_eq!(w.concat(), text, "{kind:?}");
        }
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;

    #[test]
    fn deepseek_llm_letter_class_is_exact() {
        let Class::Ranges(r) = Class::parse_brackets(DEEPSEEK_LLM_LETTERS) else {
            panic!("ranges expected");
        };
        let has = |cp: u32| r.iter().any(|&(a, b)| a <= cp && cp <= b);
        // U+212A KELVIN SIGN starts a range; normalized to "K" it would swallow ASCII
        // punctuation such as '|'.
        assert!(has(0x212A) && has(0x1F7D) && has(u32::from('z')));
        assert!(!has(u32::from('|')) && !has(u32::from('{')) && !has(u32::from('0')));
    }

    #[test]
    fn deepseek_llm_keeps_punctuation_runs_together() {
        let text = "<|endoftext|>9n";
        let mut w = Vec::new();
        PreTokenizer::new(PreTokenizerKind::DeepseekLlm).split(text, &mut w);
        let words: Vec<&str> = w.into_iter().map(|r| &text[r]).collect();
        assert_eq!(words, ["<|", "endoftext", "|>", "9", "n"]);
    }
}
