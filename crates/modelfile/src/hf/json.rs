//! Capped JSON reading and typed field extraction with errors that name the field.
//! A JSON `null` counts as absent: Hugging Face configs write `"bos_token_id": null`.

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{HfError, HfErrorKind};

/// Read `path` as JSON, refusing files longer than `cap` bytes before reading them.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Value, HfError> {
    let text = read_text_capped(path, cap)?;
    parse_capped(&text, cap, Some(path))
}

/// Read `path` as UTF-8 text of at most `cap` bytes.
pub(crate) fn read_text_capped(path: &Path, cap: u64) -> Result<String, HfError> {
    let io = |source| HfError::new(Some(path), HfErrorKind::Io { source });
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > cap {
        return Err(HfError::new(Some(path), HfErrorKind::TooLarge { len, cap }));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Parse `text` as JSON (text longer than `cap` bytes is refused). serde_json limits
/// nesting to 128 levels, which bounds its recursion.
pub(crate) fn parse_capped(text: &str, cap: u64, file: Option<&Path>) -> Result<Value, HfError> {
    if text.len() as u64 > cap {
        return Err(HfError::new(
            file,
            HfErrorKind::TooLarge {
                len: text.len() as u64,
                cap,
            },
        ));
    }
    serde_json::from_str(text).map_err(|source| HfError::new(file, HfErrorKind::Json { source }))
}

/// A JSON value's kind, for messages.
pub(crate) fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() <= 40 => format!("string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// The fields of one JSON object, with the file for error messages. `prefix` names
/// the enclosing field for nested objects (`rope_parameters.`).
pub(crate) struct Fields<'a> {
    pub map: &'a Map<String, Value>,
    pub file: Option<&'a Path>,
    pub prefix: String,
}

impl<'a> Fields<'a> {
    /// The top-level object of `value`.
    pub fn root(value: &'a Value, file: Option<&'a Path>) -> Result<Fields<'a>, HfError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                file,
                prefix: String::new(),
            }),
            other => Err(HfError::new(
                file,
                HfErrorKind::WrongType {
                    field: "(top level)".into(),
                    expected: "an object",
                    found: kind_of(other),
                },
            )),
        }
    }

    pub fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    pub fn err(&self, kind: HfErrorKind) -> HfError {
        HfError::new(self.file, kind)
    }

    pub fn wrong(&self, field: &str, expected: &'static str, found: &Value) -> HfError {
        self.err(HfErrorKind::WrongType {
            field: self.name(field),
            expected,
            found: kind_of(found),
        })
    }

    pub fn bad(&self, field: &str, value: impl ToString, reason: impl Into<String>) -> HfError {
        self.err(HfErrorKind::BadValue {
            field: self.name(field),
            value: value.to_string(),
            reason: reason.into(),
        })
    }

    pub fn missing(&self, field: &str) -> HfError {
        self.err(HfErrorKind::MissingField {
            field: self.name(field),
        })
    }

    /// The field's value, `None` when absent or null.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub fn object(&self, field: &str) -> Result<Option<Fields<'a>>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields {
                map,
                file: self.file,
                prefix: format!("{}{field}.", self.prefix),
            })),
            Some(v) => Err(self.wrong(field, "an object", v)),
        }
    }

    pub fn u64(&self, field: &str) -> Result<Option<u64>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a non-negative integer", v)),
        }
    }

    pub fn f64(&self, field: &str) -> Result<Option<f64>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a number", v)),
        }
    }

    pub fn bool(&self, field: &str) -> Result<Option<bool>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a bool", v)),
        }
    }

    pub fn str(&self, field: &str) -> Result<Option<&'a str>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a string", v)),
        }
    }

    /// A token id field that may hold one id or a list of ids (`eos_token_id`).
    pub fn id_or_list(&self, field: &str) -> Result<Vec<u32>, HfError> {
        let id = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| id(v).ok_or_else(|| self.wrong(field, "a list of u32 token ids", v)))
                .collect(),
            Some(v) => id(v)
                .map(|x| vec![x])
                .ok_or_else(|| self.wrong(field, "a u32 token id or a list of them", v)),
        }
    }

    /// A single token id (`bos_token_id`).
    pub fn id(&self, field: &str) -> Result<Option<u32>, HfError> {
        match self.u64(field)? {
            None => Ok(None),
            Some(x) => u32::try_from(x)
                .map(Some)
                .map_err(|_| self.bad(field, x, "does not fit u32")),
        }
    }
}
