//! `VocabSpec::from_gguf`: the `tokenizer.ggml.*` keys of a GGUF file.

use vtpu_modelfile::gguf::{GgufFile, MetaArray, MetaValue};

use crate::{SpecialIds, TokenizerError, VocabSpec};

impl VocabSpec {
    /// Reads the tokenizer metadata of `file`. `tokenizer.ggml.model` and
    /// `tokenizer.ggml.tokens` are required; a key of the wrong type is an error; a
    /// special token id that is negative or beyond u32 reads as absent (llama.cpp
    /// ignores such ids too).
    pub fn from_gguf(file: &GgufFile) -> Result<VocabSpec, TokenizerError> {
        let model = file.require_str("tokenizer.ggml.model")?.to_string();
        let pre = file.get_str("tokenizer.ggml.pre")?.map(str::to_string);
        let tokens: Vec<String> = file
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or(TokenizerError::MissingKey {
                key: "tokenizer.ggml.tokens",
            })?
            .iter()
            .map(str::to_string)
            .collect();
        // Scores are f32; llama.cpp also accepts i32.
        let scores = match file.get_array("tokenizer.ggml.scores")? {
            None => None,
            Some(MetaArray::F32(v)) => Some(v.clone()),
            Some(MetaArray::I32(v)) => Some(v.iter().map(|&s| s as f32).collect()),
            Some(other) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.scores".to_string(),
                    expected: "array<f32> or array<i32>",
                    actual: format!("array<{}>", other.elem_type().name()),
                })
            }
        };
        let token_types = file
            .get_i32_array("tokenizer.ggml.token_type")?
            .map(<[i32]>::to_vec);
        let merges = file
            .get_str_array("tokenizer.ggml.merges")?
            .map(|a| a.iter().map(str::to_string).collect());

        let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match file.get(key) {
                None => Ok(None),
                Some(v) => match v.as_integer() {
                    Some(i) => Ok(u32::try_from(i).ok()),
                    None => Err(TokenizerError::WrongType {
                        key: key.to_string(),
                        expected: "integer",
                        actual: v.type_name(),
                    }),
                },
            }
        };
        let special = SpecialIds {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            sep: id("tokenizer.ggml.seperator_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            mask: id("tokenizer.ggml.mask_token_id")?,
            // The deprecated prefix/suffix/middle keys are read after the current ones in
            // llama.cpp, so they win when both exist.
            fim_pre: id("tokenizer.ggml.prefix_token_id")?
                .or(id("tokenizer.ggml.fim_pre_token_id")?),
            fim_suf: id("tokenizer.ggml.suffix_token_id")?
                .or(id("tokenizer.ggml.fim_suf_token_id")?),
            fim_mid: id("tokenizer.ggml.middle_token_id")?
                .or(id("tokenizer.ggml.fim_mid_token_id")?),
            fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
        };
        let chat_template = match file.get("tokenizer.chat_template") {
            Some(MetaValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(VocabSpec {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            special,
            add_bos: file.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: file.get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: file.get_bool("tokenizer.ggml.add_space_prefix")?,
            model_name: file.get_str("general.name")?.map(str::to_string),
            chat_template,
        })
    }
}
