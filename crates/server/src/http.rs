//! The HTTP side: axum routes, OpenAI request handling, server-sent events.
//!
//! Handlers never touch the model: they check and tokenize a request (template
//! rendering and tokenization run on tokio's blocking pool), send a [`Job`] to the
//! engine thread, and turn the [`Event`]s that come back into a response. A client
//! that disconnects drops the receiving end; the engine sees the closed channel at its
//! next step and frees the slot.

use crate::api::{self, ApiError, ChatRequest, CompletionRequest, Prompt};
use crate::sched::{Cmd, Event, Finish, Job, ModelInfo, Shared, SlotAction};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use vtpu_llm::chat::{apply_chat_template_named, ChatMessage};

/// Largest request body (OpenAI-style 413 beyond).
pub const MAX_BODY_BYTES: usize = 1 << 20;

const CHAT_PAGE: &str = include_str!("chat_page.html");

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    /// std's Sender is Sync since Rust 1.72; the mutex only keeps older toolchains happy
    /// and costs nothing measurable next to a model step.
    pub cmd: Arc<Mutex<Sender<Cmd>>>,
    pub api_key: Option<Arc<str>>,
    pub queue_cap: usize,
}

impl AppState {
    fn send(&self, cmd: Cmd) -> Result<(), ApiError> {
        let tx = self
            .cmd
            .lock()
            .map_err(|_| ApiError::internal("the engine channel is poisoned"))?;
        tx.send(cmd)
            .map_err(|_| ApiError::unavailable("the engine has stopped"))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/slots", get(slots))
        .route("/slots/{id}", post(slot_action))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.json())).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

/// `--api-key`: every request but the static page and the health probe needs
/// `Authorization: Bearer KEY` (as llama-server exempts them).
async fn auth(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(key) = &st.api_key {
        let path = req.uri().path();
        let open = req.method() == axum::http::Method::GET
            && matches!(path, "/" | "/health" | "/v1/health");
        if !open {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
                return ApiError {
                    status: 401,
                    kind: "authentication_error",
                    message: "invalid or missing API key (Authorization: Bearer KEY)".into(),
                    param: None,
                    code: Some("invalid_api_key"),
                }
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference (no timing hint about the key).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn index() -> Html<&'static str> {
    Html(CHAT_PAGE)
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        kind: "invalid_request_error",
        message: "no such endpoint".into(),
        param: None,
        code: None,
    }
}

async fn health(State(st): State<AppState>) -> Response {
    if let Some(e) = st.shared.load_error.get() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "error", "error": {"message": e}})),
        )
            .into_response();
    }
    if st.shared.info.get().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "loading model"})),
        )
            .into_response();
    }
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let text = st.shared.metrics.render(
        st.shared.waiting.load(Ordering::Relaxed),
        st.shared.info.get().is_some(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn loaded(st: &AppState) -> Result<Arc<ModelInfo>, ApiError> {
    if st.shared.shutting_down.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    match st.shared.info.get() {
        Some(i) => Ok(Arc::clone(i)),
        None => Err(ApiError::unavailable(match st.shared.load_error.get() {
            Some(e) => format!("the model failed to load: {e}"),
            None => "the model is loading".into(),
        })),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn models(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let info = loaded(&st)?;
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": info.id,
            "object": "model",
            "created": now_secs(),
            "owned_by": "vtpu",
            "meta": {
                "n_ctx": info.ctx,
                "n_vocab": info.vocab,
                "parallel": info.parallel,
                "kv_restore": info.kv_restore,
            },
        }],
    })))
}

async fn slots(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    loaded(&st)?;
    let (tx, rx) = oneshot::channel();
    st.send(Cmd::Slots(tx))?;
    rx.await
        .map(Json)
        .map_err(|_| ApiError::unavailable("the engine has stopped"))
}

#[derive(serde::Deserialize)]
struct SlotQuery {
    action: Option<String>,
}

async fn slot_action(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SlotQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    loaded(&st)?;
    let id: usize = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("slot id {id:?} is not a number"), None))?;
    let action = match q.action.as_deref() {
        Some("save") => SlotAction::Save,
        Some("restore") => SlotAction::Restore,
        Some("erase") => SlotAction::Erase,
        other => {
            return Err(ApiError::invalid(
                format!("action {other:?}: expected save, restore or erase"),
                Some("action"),
            ))
        }
    };
    let body = body.map_err(rejection)?;
    let filename = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        #[derive(serde::Deserialize)]
        struct B {
            #[serde(default)]
            filename: Option<String>,
        }
        api::parse_body::<B>(&body)?.filename
    };
    let (tx, rx) = oneshot::channel();
    st.send(Cmd::Slot {
        id,
        action,
        filename,
        reply: tx,
    })?;
    match rx.await {
        Ok(r) => r.map(Json),
        Err(_) => Err(ApiError::unavailable("the engine has stopped")),
    }
}

fn rejection(r: BytesRejection) -> ApiError {
    let status = r.status().as_u16();
    if status == 413 {
        ApiError {
            status,
            kind: "invalid_request_error",
            message: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            param: None,
            code: Some("request_too_large"),
        }
    } else {
        ApiError {
            status,
            kind: "invalid_request_error",
            message: format!("cannot read the request body: {}", r.body_text()),
            param: None,
            code: None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

async fn chat(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, headers, body, Kind::Chat).await
}

async fn completions(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, headers, body, Kind::Completion).await
}

async fn handle(
    st: AppState,
    _headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Response {
    st.shared
        .metrics
        .http_requests
        .fetch_add(1, Ordering::Relaxed);
    match prepare(&st, body, kind).await {
        Ok((info, job_rx, stream, id)) => {
            if stream {
                sse(info, job_rx, kind, id).into_response()
            } else {
                collect(info, job_rx, kind, id).await
            }
        }
        Err(e) => {
            st.shared
                .metrics
                .http_rejected
                .fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
    }
}

/// Everything before the engine: checks, the prompt's tokens, the queue.
async fn prepare(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Result<(Arc<ModelInfo>, mpsc::UnboundedReceiver<Event>, bool, String), ApiError> {
    let info = loaded(st)?;
    let body = body.map_err(rejection)?;
    let info2 = Arc::clone(&info);
    // Template rendering and tokenization can take milliseconds on a large body: off
    // the async workers.
    let (prompt, params) = tokio::task::spawn_blocking(move || build_prompt(&info2, &body, kind))
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))??;
    let ctx = info.ctx;
    if prompt.len() >= ctx {
        return Err(ApiError::invalid(
            format!(
                "the prompt has {} tokens but the context holds {ctx}",
                prompt.len()
            ),
            Some("messages"),
        ));
    }
    // The last generated token is never fed back: n tokens need prompt + n - 1 positions.
    let room = ctx - prompt.len() + 1;
    let max_tokens = match params.max_tokens {
        Some(n) if n > room => {
            return Err(ApiError::invalid(
                format!(
                    "max_tokens = {n} is past the context: the prompt has {} tokens, the context holds {ctx}, so at most {room} can be generated",
                    prompt.len()
                ),
                Some("max_tokens"),
            ))
        }
        Some(n) => n,
        None => room,
    };
    let prev = st.shared.waiting.fetch_add(1, Ordering::AcqRel);
    if prev >= st.queue_cap {
        st.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::unavailable(format!(
            "the queue is full ({} requests waiting); try again later",
            st.queue_cap
        )));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = params.stream;
    let job = Job {
        prompt,
        params,
        max_tokens,
        tx,
    };
    if let Err(e) = st.send(Cmd::Job(job)) {
        st.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let id = match kind {
        Kind::Chat => format!("chatcmpl-vtpu-{n}"),
        Kind::Completion => format!("cmpl-vtpu-{n}"),
    };
    Ok((info, rx, stream, id))
}

fn build_prompt(
    info: &ModelInfo,
    body: &[u8],
    kind: Kind,
) -> Result<(Vec<u32>, api::Params), ApiError> {
    let tok = &info.tokenizer;
    match kind {
        Kind::Chat => {
            let r: ChatRequest = api::parse_body(body)?;
            let params = r.common.params(&info.id)?;
            if r.messages.is_empty() {
                return Err(ApiError::invalid(
                    "messages is empty: a chat needs at least one message",
                    Some("messages"),
                ));
            }
            let msgs = r
                .messages
                .iter()
                .map(|m| Ok(ChatMessage::new(m.role.clone(), m.text()?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            let Some(tmpl) = &info.chat_template else {
                return Err(ApiError::invalid(
                    "the model has no chat template; use /v1/completions",
                    Some("messages"),
                ));
            };
            let text = apply_chat_template_named(
                "the model's chat template",
                tmpl,
                &msgs,
                true,
                &info.bos_text,
                &info.eos_text,
            )
            .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
            let ids = tok
                .try_encode(&text, tok.add_bos(), true)
                .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
            Ok((ids, params))
        }
        Kind::Completion => {
            let r: CompletionRequest = api::parse_body(body)?;
            let params = r.common.params(&info.id)?;
            let ids = match r.prompt {
                Prompt::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|&&t| t as usize >= info.vocab) {
                        return Err(ApiError::invalid(
                            format!("token id {bad} is outside the vocabulary of {}", info.vocab),
                            Some("prompt"),
                        ));
                    }
                    ids
                }
                Prompt::Text(s) => encode(tok, &s)?,
                Prompt::Texts(v) if v.len() == 1 => encode(tok, &v[0])?,
                Prompt::Texts(v) => {
                    return Err(ApiError::invalid(
                        format!(
                            "{} prompts: only one prompt per request is supported",
                            v.len()
                        ),
                        Some("prompt"),
                    ))
                }
            };
            if ids.is_empty() {
                return Err(ApiError::invalid(
                    "the prompt is empty: there is no token to start from",
                    Some("prompt"),
                ));
            }
            Ok((ids, params))
        }
    }
}

fn encode(tok: &vtpu_tokenizer::Tokenizer, s: &str) -> Result<Vec<u32>, ApiError> {
    tok.try_encode(s, tok.add_bos(), true)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))
}

fn usage(f: &Finish) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

/// The non-streaming answer: wait for every event, then one JSON body.
async fn collect(
    info: Arc<ModelInfo>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    kind: Kind,
    id: String,
) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Error(e) => return e.into_response(),
            Event::Done(f) => {
                let choice = match kind {
                    Kind::Chat => serde_json::json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": null,
                        "finish_reason": f.reason,
                    }),
                    Kind::Completion => serde_json::json!({
                        "index": 0,
                        "text": text,
                        "logprobs": null,
                        "finish_reason": f.reason,
                    }),
                };
                return Json(serde_json::json!({
                    "id": id,
                    "object": if kind == Kind::Chat { "chat.completion" } else { "text_completion" },
                    "created": now_secs(),
                    "model": info.id,
                    "system_fingerprint": "vtpu",
                    "choices": [choice],
                    "usage": usage(&f),
                    "timings": f.timings,
                }))
                .into_response();
            }
        }
    }
    ApiError::internal("the engine ended the request without an answer").into_response()
}

/// One streamed chunk in OpenAI's format.
fn chunk(
    info: &ModelInfo,
    kind: Kind,
    id: &str,
    created: u64,
    text: Option<&str>,
    role: bool,
    finish: Option<&Finish>,
) -> serde_json::Value {
    let reason = finish.map(|f| f.reason);
    let choice = match kind {
        Kind::Chat => {
            let mut delta = serde_json::Map::new();
            if role {
                delta.insert("role".into(), "assistant".into());
                delta.insert("content".into(), "".into());
            }
            if let Some(t) = text {
                delta.insert("content".into(), t.into());
            }
            serde_json::json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason})
        }
        Kind::Completion => serde_json::json!({
            "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason,
        }),
    };
    let mut v = serde_json::json!({
        "id": id,
        "object": if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
        "created": created,
        "model": info.id,
        "system_fingerprint": "vtpu",
        "choices": [choice],
    });
    if let Some(f) = finish {
        v["usage"] = usage(f);
        v["timings"] = serde_json::to_value(&f.timings).unwrap_or_default();
    }
    v
}

fn sse(
    info: Arc<ModelInfo>,
    rx: mpsc::UnboundedReceiver<Event>,
    kind: Kind,
    id: String,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let created = now_secs();
    let first =
        (kind == Kind::Chat).then(|| {
            Ok(SseEvent::default()
                .data(chunk(&info, kind, &id, created, None, true, None).to_string()))
        });
    let info2 = Arc::clone(&info);
    let body = UnboundedReceiverStream::new(rx).map(move |ev| {
        let v = match ev {
            Event::Text(t) => chunk(&info2, kind, &id, created, Some(&t), false, None),
            Event::Done(f) => chunk(&info2, kind, &id, created, None, false, Some(&f)),
            Event::Error(e) => e.json(),
        };
        Ok(SseEvent::default().data(v.to_string()))
    });
    let done = stream::once(async { Ok(SseEvent::default().data("[DONE]")) });
    Sse::new(stream::iter(first).chain(body).chain(done)).keep_alive(KeepAlive::default())
}
