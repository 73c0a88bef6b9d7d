//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship their template as Jinja2 source (Hugging Face `tokenizer_config.json`
//! `chat_template`, GGUF `tokenizer.chat_template`). We render it with minijinja set up
//! the way transformers sets up jinja2 (`apply_chat_template` ->
//! `_compile_jinja_template`), so the text matches what transformers and llama.cpp
//! produce for the same messages:
//! - `trim_blocks` and `lstrip_blocks` on, a single trailing newline dropped (jinja2's
//!   `keep_trailing_newline = False`);
//! - `loop_controls` (`{% break %}`, `{% continue %}`) on;
//! - Python's string/list/dict methods (`.strip()`, `.startswith()`, `.items()`, ...)
//!   through `minijinja_contrib::pycompat`;
//! - globals `raise_exception(msg)` (an error carrying `msg`) and the variables
//!   `messages`, `add_generation_prompt`, `bos_token`, `eos_token`;
//! - transformers' `tojson` (Python `json.dumps`: `", "`/`": "` separators, keys in
//!   insertion order, no HTML escaping), not jinja2's HTML-safe one. Dict literals keep
//!   insertion order (minijinja `preserve_order`) and a message's keys are `role`,
//!   `content` in that order, as in the Python dicts transformers passes.
//!
//! Not provided: `strftime_now` (Llama 3 templates test `is defined` and fall back to
//! a fixed date) and special tokens other than BOS/EOS.
//!
//! Templates come from model files, so they are untrusted: rendering runs on a fuel
//! budget ([`TEMPLATE_FUEL`]) that bounds its time and memory.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use thiserror::Error;

/// Fuel for one render (minijinja charges about one per instruction and one per 64
/// bytes created). Real templates spend well under a hundred per message; this allows
/// conversations of tens of thousands of messages and caps a hostile template at a
/// few seconds and ~256 MiB.
pub const TEMPLATE_FUEL: u64 = 4_000_000;

/// How much of the template's source an error quotes to say which template failed.
const TEMPLATE_EXCERPT_CHARS: usize = 48;

/// Deepest nesting `tojson` writes; deeper values (which a template can build in a
/// loop) are an error rather than a stack overflow.
const TOJSON_MAX_DEPTH: usize = 256;

/// One turn of a conversation; `role` is usually `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatError {
    /// The template does not parse.
    #[error("chat template {template}: syntax error{line}: {message}")]
    Syntax {
        template: String,
        line: LineNo,
        message: String,
    },
    /// The template called `raise_exception(message)`: it rejects these messages (for
    /// example roles that do not alternate).
    #[error("chat template {template} rejected the conversation{line}: {message}")]
    Raised {
        template: String,
        line: LineNo,
        message: String,
    },
    /// Rendering failed for another reason (bad operation, fuel exhausted, ...).
    #[error("chat template {template}: render error{line}: {message}")]
    Render {
        template: String,
        line: LineNo,
        message: String,
    },
}

/// A template line number for error messages; prints as " at line N" or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineNo(pub Option<usize>);

impl fmt::Display for LineNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " at line {n}"),
            None => Ok(()),
        }
    }
}

/// The message of a `raise_exception` call, carried as the source of the minijinja
/// error so it can be told apart from engine errors.
#[derive(Debug)]
struct TemplateException(String);

impl fmt::Display for TemplateException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateException {}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(TemplateException(message)))
}

/// Renders `template` (Jinja2 source) for `messages`, with `add_generation_prompt`
/// (open an assistant turn at the end), `bos_token` and `eos_token` as the template's
/// variables of those names. Errors name the template by a quoted excerpt.
pub fn apply_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String, ChatError> {
    apply_chat_template_named(
        &excerpt(template),
        template,
        messages,
        add_generation_prompt,
        bos,
        eos,
    )
}

/// [`apply_chat_template`] with the caller's name for the template in errors (for
/// example the model file it came from).
pub fn apply_chat_template_named(
    name: &str,
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String, ChatError> {
    let env = environment().map_err(|e| to_chat_error(name, &e))?;
    let tmpl = env
        .template_from_named_str("chat_template", template)
        .map_err(|e| to_chat_error(name, &e))?;
    let messages: Vec<Value> = messages.iter().map(message_value).collect();
    let mut ctx = BTreeMap::new();
    ctx.insert("messages".to_string(), Value::from(messages));
    ctx.insert(
        "add_generation_prompt".to_string(),
        Value::from(add_generation_prompt),
    );
    ctx.insert("bos_token".to_string(), Value::from(bos));
    ctx.insert("eos_token".to_string(), Value::from(eos));
    tmpl.render(Value::from(ctx))
        .map_err(|e| to_chat_error(name, &e))
}

/// The environment transformers' jinja2 setup corresponds to (see the module doc).
fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", tojson);
    Ok(env)
}

/// A message as the template sees it: a map with keys `role`, `content`, enumerated
/// in that order (a Python dict literal's order), any other key undefined.
#[derive(Debug)]
struct MessageObject {
    role: Value,
    content: Value,
}

impl Object for MessageObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(self.role.clone()),
            "content" => Some(self.content.clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

fn message_value(m: &ChatMessage) -> Value {
    Value::from_object(MessageObject {
        role: Value::from(m.role.as_str()),
        content: Value::from(m.content.as_str()),
    })
}

/// How `tojson` lays out its output; the fields of Python's `json.dumps`.
struct JsonStyle {
    /// Per-level indent; `None` = everything on one line.
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// transformers' filter: `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)` = `json.dumps` with those arguments. The first two may be given
/// by position (minijinja filters take few positional arguments), all by keyword.
fn tojson(
    value: &Value,
    ensure_ascii: Option<bool>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ensure_ascii = ensure_ascii
        .or(kwargs.get("ensure_ascii")?)
        .unwrap_or(false);
    let indent = indent.or(kwargs.get("indent")?).filter(|v| !v.is_none());
    let separators = kwargs
        .get::<Option<Value>>("separators")?
        .filter(|v| !v.is_none());
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let bad = |what: &str| Error::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let indent = match indent {
        None => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            // json.dumps: a number is that many spaces (negative = none), a string is used as is.
            (Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(64))),
            (None, Some(s)) => Some(s.to_string()),
            _ => return Err(bad("indent must be an integer or a string")),
        },
    };
    let (item_sep, key_sep) = match separators {
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
        Some(seps) => {
            let item = seps.get_item(&Value::from(0))?;
            let key = seps.get_item(&Value::from(1))?;
            match (item.as_str(), key.as_str(), seps.len()) {
                (Some(i), Some(k), Some(2)) => (i.to_string(), k.to_string()),
                _ => return Err(bad("separators must be a pair of strings")),
            }
        }
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys,
        ensure_ascii,
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn write_json(out: &mut String, v: &Value, style: &JsonStyle, depth: usize) -> Result<(), Error> {
    let bad = |what: String| Error::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    if depth > TOJSON_MAX_DEPTH {
        return Err(bad(format!("nesting deeper than {TOJSON_MAX_DEPTH}")));
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => {
            let _ = write!(out, "{v}");
        }
        ValueKind::Number => {
            let f = f64::try_from(v.clone())?;
            out.push_str(&py_float_repr(f));
        }
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_container(out, '[', ']', &items, style, depth, |out, item| {
                write_json(out, item, style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in v.try_iter()? {
                let value = v.get_item(&key)?;
                entries.push((json_key(&key)?, value));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', &entries, style, depth, |out, (k, val)| {
                write_json_str(out, k, style);
                out.push_str(&style.key_sep);
                write_json(out, val, style, depth + 1)
            })?;
        }
        kind => return Err(bad(format!("a {kind} value is not JSON serializable"))),
    }
    Ok(())
}

/// `open item sep item close`, with json.dumps' newlines and indents when indenting.
fn write_container<T>(
    out: &mut String,
    open: char,
    close: char,
    items: &[T],
    style: &JsonStyle,
    depth: usize,
    mut write_item: impl FnMut(&mut String, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, depth + 1);
        write_item(out, item)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// A map key as json.dumps writes it: strings as they are, scalars converted.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::Number if key.is_integer() => Ok(key.to_string()),
        ValueKind::Number => Ok(py_float_repr(f64::try_from(key.clone())?)),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: a {kind} cannot be a JSON object key"),
        )),
    }
}

/// A JSON string literal with Python json's escapes.
fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, positional for decimal exponents
/// in [-4, 16), otherwise `d.ddde+XX`; `NaN` / `Infinity` as json.dumps writes them.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // Rust's `{:e}` is also shortest round-trip: "-1.2345e-7", "1e16", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

fn to_chat_error(name: &str, e: &Error) -> ChatError {
    let template = name.to_string();
    let line = LineNo(e.line());
    let raised = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<TemplateException>())
        .map(|t| t.0.clone());
    if let Some(message) = raised {
        return ChatError::Raised {
            template,
            line,
            message,
        };
    }
    let syntax = e.kind() == ErrorKind::SyntaxError;
    let message = match e.detail() {
        // The variant already says "syntax error".
        Some(d) if syntax => d.to_string(),
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if syntax {
        ChatError::Syntax {
            template,
            line,
            message,
        }
    } else {
        ChatError::Render {
            template,
            line,
            message,
        }
    }
}

/// `"{%- if tools %}\n    {{- '<|im_st…" (2104 bytes)`: enough to recognise a template.
fn excerpt(template: &str) -> String {
    let head: String = template.chars().take(TEMPLATE_EXCERPT_CHARS).collect();
    let more = if head.len() < template.len() {
        "…"
    } else {
        ""
    };
    format!("{:?}{more} ({} bytes)", head, template.len())
}
