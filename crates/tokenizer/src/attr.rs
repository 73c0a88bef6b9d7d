//! Token attributes (llama.cpp's `llama_token_attr`), a bit set per token derived from
//! `tokenizer.ggml.token_type` and amended by the loader's rules.

pub(crate) const UNKNOWN: u16 = 1 << 0;
pub(crate) const UNUSED: u16 = 1 << 1;
pub(crate) const NORMAL: u16 = 1 << 2;
pub(crate) const CONTROL: u16 = 1 << 3;
pub(crate) const USER_DEFINED: u16 = 1 << 4;
pub(crate) const BYTE: u16 = 1 << 5;
/// Strip whitespace before the token when splitting special tokens out of text.
pub(crate) const LSTRIP: u16 = 1 << 7;
/// Strip whitespace after the token when splitting special tokens out of text.
pub(crate) const RSTRIP: u16 = 1 << 8;

/// The attribute a `tokenizer.ggml.token_type` value starts from.
pub(crate) fn from_token_type(t: crate::TokenType) -> u16 {
    use crate::TokenType as T;
    match t {
        T::Undefined => 0,
        T::Normal => NORMAL,
        T::Unknown => UNKNOWN,
        T::Control => CONTROL,
        T::UserDefined => USER_DEFINED,
        T::Unused => UNUSED,
        T::Byte => BYTE,
    }
}
