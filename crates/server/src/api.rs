//! The OpenAI request bodies we accept, their checks, and OpenAI-style errors.
//!
//! Bodies are parsed in two steps so each failure gets the right message: bytes ->
//! JSON (malformed JSON), JSON -> typed request (a field of the wrong type, named by
//! serde). Unknown fields are ignored, as OpenAI-compatible servers do; fields we do
//! not support with a value that would change the answer (`n` > 1) are refused.

use serde::Deserialize;

/// An error as OpenAI sends it: HTTP status + `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 503,
            kind: "unavailable_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// `stop`: one string or a list.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// A message's `content`: a string, or a list of parts of which we read the text ones.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// The sampling and length fields both endpoints share.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct Common {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` in the chat API.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// llama.cpp extensions every llama-server client sends.
    #[serde(default)]
    pub top_k: Option<u64>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<u64>,
    /// llama.cpp extension: keep generating past end-of-generation tokens (benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub common: Common,
    pub messages: Vec<Message>,
}

/// `prompt`: a string, a list of one string, or token ids.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub common: Common,
    pub prompt: Prompt,
}

/// Most stop strings accepted (OpenAI allows 4; llama.cpp more) and their length.
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;

/// Parses a JSON body into `T` with OpenAI-style errors.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}"), None))?;
    if !v.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object", None));
    }
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))
}

impl Message {
    /// The text of the message (text parts joined).
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(s)) => Ok(s.clone()),
            Some(Content::Parts(parts)) => {
                let mut s = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::invalid(
                            format!(
                                "content part type {:?} is not supported (text only)",
                                p.kind
                            ),
                            Some("messages"),
                        ));
                    }
                    s.push_str(p.text.as_deref().unwrap_or(""));
                }
                Ok(s)
            }
        }
    }
}

/// Sampling settings of one request, checked.
#[derive(Debug, Clone)]
pub struct Params {
    pub sampler: vtpu_llm::sampler::SamplerConfig,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub ignore_eos: bool,
}

impl Common {
    /// Checks the model name against `served` and every sampling field.
    pub fn params(&self, served: &str) -> Result<Params, ApiError> {
        if let Some(m) = &self.model {
            if m != served && !m.is_empty() {
                return Err(ApiError {
                    status: 404,
                    kind: "invalid_request_error",
                    message: format!(
                        "the model `{m}` does not exist; this server serves `{served}`"
                    ),
                    param: Some("model"),
                    code: Some("model_not_found"),
                });
            }
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    format!("n = {n}: only n = 1 is supported"),
                    Some("n"),
                ));
            }
        }
        // llama-server's defaults (llama.cpp common_params_sampling).
        let mut s = vtpu_llm::sampler::SamplerConfig {
            repeat_penalty: 1.0,
            ..Default::default()
        };
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if let Some(k) = self.top_k {
            s.top_k = usize::try_from(k).unwrap_or(usize::MAX);
        }
        if let Some(m) = self.min_p {
            s.min_p = m;
        }
        if let Some(r) = self.repeat_penalty {
            s.repeat_penalty = r;
        }
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        if s.temperature > 100.0 {
            return Err(ApiError::invalid(
                format!("temperature {} is outside [0, 100]", s.temperature),
                Some("temperature"),
            ));
        }
        s.validate()
            .map_err(|e| ApiError::invalid(e.to_string(), None))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS || stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid(
                format!("at most {MAX_STOPS} stop strings of at most {MAX_STOP_BYTES} bytes"),
                Some("stop"),
            ));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => None,
            Some(0) => {
                return Err(ApiError::invalid(
                    "max_tokens must be at least 1",
                    Some("max_tokens"),
                ))
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        Ok(Params {
            sampler: s,
            max_tokens,
            stop,
            stream: self.stream,
            ignore_eos: self.ignore_eos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_problem() {
        let e = parse_body::<ChatRequest>(b"{\"messages\": [").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_body::<ChatRequest>(b"{\"messages\": 3}").unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse_body::<ChatRequest>(b"[1]").unwrap_err();
        assert!(e.message.contains("object"));
        let e = parse_body::<ChatRequest>(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":"x"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn params_check_model_n_and_sampling() {
        let c = Common {
            model: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(c.params("m").unwrap_err().status, 404);
        let c = Common {
            n: Some(2),
            ..Default::default()
        };
        assert_eq!(c.params("m").unwrap_err().param, Some("n"));
        let c = Common {
            top_p: Some(0.0),
            ..Default::default()
        };
        assert!(c.params("m").is_err());
        let c = Common {
            temperature: Some(0.0),
            seed: Some(5),
            stop: Some(Stop::Many(vec!["a".into(), String::new()])),
            max_tokens: Some(7),
            ..Default::default()
        };
        let p = c.params("m").unwrap();
        assert_eq!(p.sampler.temperature, 0.0);
        assert_eq!(p.sampler.seed, 5);
        assert_eq!(p.stop, vec!["a".to_string()]);
        assert_eq!(p.max_tokens, Some(7));
        let c = Common {
            max_tokens: Some(0),
            ..Default::default()
        };
        assert!(c.params("m").is_err());
    }

    #[test]
    fn content_parts_and_prompts() {
        let r: ChatRequest = parse_body(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].text().unwrap(), "ab");
        let r: CompletionRequest = parse_body(br#"{"prompt":[1,2,3]}"#).unwrap();
        assert!(matches!(r.prompt, Prompt::Tokens(ref t) if t == &[1, 2, 3]));
        let r: CompletionRequest = parse_body(br#"{"prompt":["x"]}"#).unwrap();
        assert!(matches!(r.prompt, Prompt::Texts(_)));
    }
}
