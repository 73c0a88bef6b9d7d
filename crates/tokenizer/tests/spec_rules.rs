//! llama.cpp's load and encode rules on small hand-built vocabularies: merge order,
//! special-token splitting, BOS/EOG rules, SentencePiece byte fallback and leading
//! space, decoding, errors, and `VocabSpec::from_gguf`.

use std::sync::Arc;

use vtpu_modelfile::gguf::{GgufFile, GgufWriter, MetaArray, MetaValue, StrArray};
use vtpu_tokenizer::{
    DetokenizeOptions, SpecialIds, Tokenizer, TokenizerError, TokenizerKind, VocabSpec,
};

/// GPT-2 byte-level alphabet character of byte `b`.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let k = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + k).expect("below U+0144")
}

/// A byte-level vocabulary: the 256 alphabet characters (ids 0..256), then `extra`
/// (ids from 256) with their token types.
fn bpe_spec(pre: &str, extra: &[(&str, i32)], merges: &[&str]) -> VocabSpec {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![1; 256];
    for (t, ty) in extra {
        tokens.push(t.to_string());
        types.push(*ty);
    }
    VocabSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: Some(types),
        merges: Some(merges.iter().map(|m| m.to_string()).collect()),
        ..VocabSpec::default()
    }
}

fn id(tok: &Tokenizer, text: &str) -> u32 {
    tok.token_id(text)
        .unwrap_or_else(|| panic!("no token {text:?}"))
}

#[test]
fn unsupported_model_and_pre_tokenizer_are_named_errors() {
    let mut spec = bpe_spec("gpt-2", &[], &[]);
    spec.model = "t5".into();
    let err = Tokenizer::from_spec(spec).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::UnsupportedModel { model } if model == "t5"),
        "{err}"
    );
    assert!(err.to_string().contains("\"t5\""), "{err}");

    let err = Tokenizer::from_spec(bpe_spec("tekken", &[], &[])).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::UnsupportedPreTokenizer { pre, .. } if pre == "tekken"),
        "{err}"
    );
    assert!(err.to_string().contains("\"tekken\""), "{err}");

    let mut spec = bpe_spec("gpt-2", &[], &[]);
    spec.merges = None;
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::MissingMerges)
    ));

    let mut spec = bpe_spec("gpt-2", &[], &[]);
    spec.token_types = Some(vec![1; 10]);
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::ArrayTooShort {
            key: "tokenizer.ggml.token_type",
            len: 10,
            n_tokens: 256
        })
    ));

    assert!(matches!(
        Tokenizer::from_spec(VocabSpec {
            model: "llama".into(),
            ..VocabSpec::default()
        }),
        Err(TokenizerError::EmptyVocabulary)
    ));
}

#[test]
fn merges_apply_by_rank_and_leftmost_first() {
    let tok = Tokenizer::from_spec(bpe_spec(
        "gpt-2",
        &[("ab", 1), ("bc", 1), ("abc", 1), ("aa", 1), ("Ġa", 1)],
        &["a b", "b c", "ab c", "a a", "Ġ a"],
    ))
    .unwrap();
    assert_eq!(
        tok.kind(),
        TokenizerKind::ByteLevelBpe(vtpu_tokenizer::PreTokenizerKind::Gpt2)
    );
    // "a b" outranks "b c": ab + c, then "ab c".
    assert_eq!(tok.encode("abc", false, false), [id(&tok, "abc")]);
    // Equal ranks: the leftmost pair merges first.
    assert_eq!(
        tok.encode("aaa", false, false),
        [id(&tok, "aa"), id(&tok, "a")]
    );
    // The leading space of a word is the alphabet's Ġ.
    assert_eq!(
        tok.encode("x a", false, false),
        [id(&tok, "x"), id(&tok, "Ġa")]
    );
    assert_eq!(tok.token_to_piece(id(&tok, "Ġa"), false), b" a");
    // Every byte round-trips through the alphabet.
    let text = "é\u{0}\n\t~ÿ";
    assert_eq!(tok.decode(&tok.encode(text, false, false)), text);
}

#[test]
fn control_tokens_need_parse_special_user_defined_do_not() {
    let tok =
        Tokenizer::from_spec(bpe_spec("gpt-2", &[("<|im_end|>", 3), ("<tool>", 4)], &[])).unwrap();
    let im_end = id(&tok, "<|im_end|>");
    let tool = id(&tok, "<tool>");
    let plain = tok.encode("x<|im_end|>", false, false);
    assert!(!plain.contains(&im_end) && plain.len() > 2, "{plain:?}");
    assert_eq!(
        tok.encode("x<|im_end|>", false, true),
        [id(&tok, "x"), im_end]
    );
    assert_eq!(
        tok.encode("a<tool>b", false, false),
        [id(&tok, "a"), tool, id(&tok, "b")]
    );
    // Control tokens render only on request; user-defined ones always.
    assert_eq!(tok.token_to_piece(im_end, false), b"");
    assert_eq!(tok.token_to_piece(im_end, true), b"<|im_end|>");
    assert_eq!(tok.token_to_piece(tool, false), b"<tool>");
    assert_eq!(tok.token_to_piece(999_999, true), b"");
}

#[test]
fn end_of_generation_set_follows_llama_cpp() {
    // "<|im_end|>" typed normal: llama.cpp makes it control, EOT and EOG.
    let mut spec = bpe_spec(
        "qwen2",
        &[("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 1)],
        &[],
    );
    spec.special = SpecialIds {
        eos: Some(256),
        bos: Some(256),
        ..SpecialIds::default()
    };
    let tok = Tokenizer::from_spec(spec).unwrap();
    let (eot, start, end) = (256, 257, 258);
    assert!(tok.is_eog(eot) && tok.is_eog(end) && !tok.is_eog(start));
    assert!(tok.is_control(end));
    assert_eq!(tok.eos(), Some(eot));
    assert_eq!(tok.eot(), Some(eot), "the lowest id of the EOT texts");
    assert_eq!(tok.eog_ids(), [eot, end]);
    assert!(!tok.add_bos(), "qwen2 adds no BOS by default");
}

#[test]
fn bos_rules() {
    // Llama 3 style vocabularies add BOS unless the file says otherwise.
    let mut spec = bpe_spec("llama-bpe", &[("<|begin_of_text|>", 3)], &[]);
    spec.special.bos = Some(256);
    let tok = Tokenizer::from_spec(spec.clone()).unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.encode("a", true, false), [256, id(&tok, "a")]);
    assert_eq!(tok.encode("a", false, false), [id(&tok, "a")]);
    assert_eq!(tok.encode("", true, false), [256]);
    spec.add_bos = Some(false);
    assert_eq!(
        Tokenizer::from_spec(spec).unwrap().encode("a", true, false),
        [id(&tok, "a")]
    );

    // A SentencePiece vocabulary too small for the default BOS id 1 cannot add one.
    let spec = VocabSpec {
        model: "llama".into(),
        tokens: vec!["<unk>".into()],
        ..VocabSpec::default()
    };
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::MissingSpecialToken {
            flag: "add_bos_token",
            ..
        })
    ));
}

/// A SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then pieces.
fn spm_spec(pieces: &[(&str, f32)]) -> VocabSpec {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    VocabSpec {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        ..VocabSpec::default()
    }
}

#[test]
fn sentencepiece_scores_leading_space_and_byte_fallback() {
    let tok = Tokenizer::from_spec(spm_spec(&[
        ("\u{2581}", -10.0),
        ("a", -10.0),
        ("b", -10.0),
        ("ab", -3.0),
        ("\u{2581}a", -2.0),
        ("\u{2581}ab", -1.0),
    ]))
    .unwrap();
    assert_eq!(tok.kind(), TokenizerKind::SentencePiece);
    let t = |s: &str| id(&tok, s);
    // " ab a" -> "▁ab▁a": "▁a" (-2) beats "ab" (-3), then "▁a"+"b" -> "▁ab" (-1).
    assert_eq!(
        tok.encode("ab a", true, false),
        [1, t("\u{2581}ab"), t("\u{2581}a")]
    );
    // Characters without a token become byte tokens.
    let ids = tok.encode("aé", false, false);
    assert_eq!(ids, [t("\u{2581}a"), t("<0xC3>"), t("<0xA9>")]);
    assert_eq!(tok.decode(&ids), " aé");
    // llama.cpp's detokenizer drops the leading space the encoder added.
    assert_eq!(
        tok.detokenize(&ids, DetokenizeOptions::default()),
        "aé".as_bytes()
    );
    // ... unless it removes a BOS instead (llama.cpp keeps the space then).
    let with_bos = tok.encode("aé", true, false);
    let opts = DetokenizeOptions {
        remove_special: true,
        unparse_special: false,
    };
    assert_eq!(tok.detokenize(&with_bos, opts), " aé".as_bytes());
    assert_eq!(
        tok.detokenize(&with_bos, DetokenizeOptions::default()),
        " aé".as_bytes()
    );
    // A streamed decode holds the first byte of "é" back.
    let mut s = tok.stream();
    assert_eq!(s.push(ids[0]), " a");
    assert_eq!(s.push(ids[1]), "");
    assert_eq!(s.push(ids[2]), "é");
    assert_eq!(s.finish(), "");
    // After a special token, text gets the leading space again.
    let ids = tok.encode("a</s>a", false, true);
    assert_eq!(ids, [t("\u{2581}a"), 2, t("\u{2581}a")]);
}

#[test]
fn phi3_special_tokens_eat_following_whitespace() {
    let extra = [("<|assistant|>", 4)];
    let base = bpe_spec("gpt-2", &extra, &[]);
    let plain = Tokenizer::from_spec(base.clone()).unwrap();
    let phi = Tokenizer::from_spec(VocabSpec {
        model_name: Some("Phi3".into()),
        ..base
    })
    .unwrap();
    let a = 256;
    let space = id(&plain, "Ġ");
    assert_eq!(
        plain.encode("<|assistant|> x", false, false),
        [a, space, id(&plain, "x")]
    );
    assert_eq!(
        phi.encode("<|assistant|> x", false, false),
        [a, id(&phi, "x")]
    );
}

#[test]
fn vocab_spec_from_gguf_reads_the_tokenizer_keys() {
    let mut w = GgufWriter::new();
    let strs =
        |v: &[&str]| MetaValue::Array(MetaArray::String(v.iter().copied().collect::<StrArray>()));
    w.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("general.name", MetaValue::String("Tiny".into()))
        .add_meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .add_meta("tokenizer.ggml.pre", MetaValue::String("smollm".into()))
        .add_meta(
            "tokenizer.ggml.tokens",
            strs(&["a", "b", "ab", "<|endoftext|>"]),
        )
        .add_meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(vec![1, 1, 1, 3])),
        )
        .add_meta("tokenizer.ggml.merges", strs(&["a b"]))
        .add_meta("tokenizer.ggml.eos_token_id", MetaValue::U32(3))
        .add_meta("tokenizer.ggml.padding_token_id", MetaValue::I32(-1))
        .add_meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .add_meta(
            "tokenizer.chat_template",
            MetaValue::String("{{ x }}".into()),
        );
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::parse(Arc::new(bytes)).unwrap();
    let spec = VocabSpec::from_gguf(&file).unwrap();
    assert_eq!(spec.model, "gpt2");
    assert_eq!(spec.pre.as_deref(), Some("smollm"));
    assert_eq!(spec.tokens, ["a", "b", "ab", "<|endoftext|>"]);
    assert_eq!(spec.token_types, Some(vec![1, 1, 1, 3]));
    assert_eq!(spec.merges, Some(vec!["a b".to_string()]));
    assert_eq!(spec.special.eos, Some(3));
    assert_eq!(spec.special.pad, None, "a negative id reads as absent");
    assert_eq!(spec.add_bos, Some(false));
    assert_eq!(spec.model_name.as_deref(), Some("Tiny"));
    assert_eq!(spec.chat_template.as_deref(), Some("{{ x }}"));
    let tok = Tokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.encode("ab", false, false), [2]);
    assert!(tok.is_eog(3));
    assert_eq!(tok.chat_template(), Some("{{ x }}"));

    // A key of the wrong type is an error naming the key.
    let mut w = GgufWriter::new();
    w.add_meta("tokenizer.ggml.model", MetaValue::U32(1));
    let file = GgufFile::parse(Arc::new(w.to_bytes().unwrap())).unwrap();
    let err = VocabSpec::from_gguf(&file).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
}
