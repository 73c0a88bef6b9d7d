//! vtpu-server: `vtpu serve`, an OpenAI-compatible HTTP server over the sentrons.
//!
//! Two halves joined by channels:
//! - [`http`]: axum on tokio. Checks requests ([`api`]), renders chat templates,
//!   tokenizes, streams answers as server-sent events, serves the chat page, `/health`,
//!   `/metrics` ([`metrics`]) and `/slots`.
//! - [`sched`]: one engine thread that owns the model ([`engine`]): continuous batching
//!   over the slots, the prompt cache ([`cache`]) and its files in phext space
//!   ([`cache_file`], shared with `vtpu chat --session`).
//!
//! [`serve`] binds the listener first (so `/health` answers 503 while the model loads),
//! runs the loader on the engine thread, and stops on SIGTERM / Ctrl-C: in-flight
//! requests get their final chunk, queued ones a 503, and the prompt cache is saved.

pub mod api;
pub mod cache;
pub mod cache_file;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod sched;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub use engine::{Engine, EngineError, KvSnap, ModelEngine};
pub use sched::{Loaded, Loader, ModelInfo};

/// `vtpu serve`'s settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0: any free port (the chosen one is printed).
    pub port: u16,
    /// Sequences decoded together.
    pub parallel: usize,
    /// Requests waiting for a slot beyond which the server answers 503.
    pub queue: usize,
    pub api_key: Option<String>,
    /// Bytes of host memory for the prompt cache's stored sequences.
    pub cache_mem: usize,
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("the model failed to load: {0}")]
    Load(String),
    #[error("the engine thread panicked")]
    EnginePanic,
}

/// Runs the server until SIGTERM or Ctrl-C (or the model fails to load).
pub fn serve(cfg: ServeConfig, loader: Loader) -> Result<(), ServeError> {
    // Two async workers are plenty: handlers only parse, tokenize and forward; the model
    // runs on its own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve_async(cfg, loader))
}

async fn serve_async(cfg: ServeConfig, loader: Loader) -> Result<(), ServeError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(ServeError::Http)?;
    eprintln!("vtpu serve: listening on http://{local} (loading the model)");

    let shared = Arc::new(sched::Shared::new());
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    // The engine thread tells the async side when loading failed, so the server stops.
    let (fatal_tx, mut fatal_rx) = tokio::sync::watch::channel(false);
    let sched_cfg = sched::SchedConfig {
        parallel: cfg.parallel.max(1),
        cache_mem: cfg.cache_mem,
        cache_dir: cfg.cache_dir.clone(),
    };
    let shared2 = Arc::clone(&shared);
    let engine = std::thread::Builder::new()
        .name("vtpu-engine".into())
        .spawn(move || {
            let wrapped: Loader = Box::new(move || {
                let r = loader();
                if r.is_err() {
                    let _ = fatal_tx.send(true);
                }
                r
            });
            sched::run(wrapped, sched_cfg, cmd_rx, shared2);
        })
        .map_err(ServeError::Thread)?;

    let state = http::AppState {
        shared: Arc::clone(&shared),
        cmd: Arc::new(Mutex::new(cmd_tx.clone())),
        api_key: cfg.api_key.as_deref().map(Arc::from),
        queue_cap: cfg.queue,
    };
    let app = http::router(state);
    let shared3 = Arc::clone(&shared);
    let stop_tx = Mutex::new(cmd_tx);
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => eprintln!("vtpu serve: stopping (finishing in-flight requests)"),
            // The sender goes away after a successful load: only `true` means failure.
            _ = async {
                if fatal_rx.wait_for(|&f| f).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {}
        }
        shared3.shutting_down.store(true, Ordering::Release);
        if let Ok(tx) = stop_tx.lock() {
            let _ = tx.send(sched::Cmd::Shutdown);
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Http);
    let joined = tokio::task::spawn_blocking(move || engine.join())
        .await
        .map_err(|_| ServeError::EnginePanic)?;
    if joined.is_err() {
        return Err(ServeError::EnginePanic);
    }
    served?;
    if let Some(e) = shared.load_error.get() {
        return Err(ServeError::Load(e.clone()));
    }
    eprintln!("vtpu serve: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
