//! A fixed-response OpenAI-compatible upstream for the benchmark (`scripts/bench.py`).
//!
//! The Python mock cannot hold thousands of requests per second on a small machine; this one
//! does, so the benchmark measures the proxy, not its upstream. It answers
//! `POST /v1/chat/completions` with a fixed chat completion (non-streaming) or a fixed SSE
//! stream of chunks `--chunk-interval-us` apart, both with `usage` (a stream only when
//! `stream_options.include_usage` asks for it, as OpenAI does), and `GET /health`. Like the
//! proxy, it binds port 0 by default and writes the port it got to `--port-file`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// The words of every reply; a streamed reply sends one word per content chunk.
const WORDS: [&str; 8] = [
    "Switchyard",
    " relays",
    " this",
    " fixed",
    " reply",
    " from",
    " its",
    " upstream.",
];
/// The prompt tokens every reply reports (the reply is fixed, so is its usage).
const PROMPT_TOKENS: u64 = 16;

/// A fixed-response OpenAI-compatible upstream for benchmarks.
#[derive(Parser, Debug)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on; 0 lets the OS pick (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// File to write the bound port to once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Pause between the events of a streamed reply, in microseconds (0: no pause).
    #[arg(long, default_value_t = 1000)]
    chunk_interval_us: u64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

struct Upstream {
    chunk_interval: Duration,
    next_id: AtomicU64,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[allow(dead_code)]
    messages: IgnoredAny,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.workers.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(serve(cli)),
        Err(err) => Err(format!("cannot start the runtime: {err}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fast_upstream: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let state = Arc::new(Upstream {
        chunk_interval: Duration::from_micros(cli.chunk_interval_us),
        next_id: AtomicU64::new(1),
    });
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(state);
    let listener = TcpListener::bind((cli.bind.as_str(), cli.port))
        .await
        .map_err(|err| format!("cannot listen on {}:{}: {err}", cli.bind, cli.port))?;
    let local = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    if let Some(path) = &cli.port_file {
        write_port_file(path, local.port())
            .map_err(|err| format!("cannot write port file {}: {err}", path.display()))?;
    }
    eprintln!("fast_upstream listening on {local}");
    let listener = listener.tap_io(|tcp| {
        // Small replies and stream events go out at once, not after a delayed ACK.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
        .map_err(|err| format!("server error: {err}"))
}

async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

async fn chat_completions(State(state): State<Arc<Upstream>>, body: Bytes) -> Response {
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return bad_request(&format!("invalid request body: {err}")),
    };
    let id = format!(
        "chatcmpl-fast-{}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    if request.stream.unwrap_or(false) {
        let include_usage = request
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false);
        let events = stream_events(&id, created, &request.model, include_usage);
        return stream_response(events, state.chunk_interval);
    }
    let reply = completion(&id, created, &request.model);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&reply).unwrap_or_default(),
    )
        .into_response()
}

fn usage() -> Value {
    let completion_tokens = WORDS.len() as u64;
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    })
}

fn completion(id: &str, created: u64, model: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": WORDS.concat(), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(),
        "system_fingerprint": "fp_fast_upstream",
    })
}

/// The SSE events of a streamed reply, each one `data: ...\n\n`: the role, one chunk per
/// word, the finish reason, the usage (when asked for), and `[DONE]`.
fn stream_events(id: &str, created: u64, model: &str, include_usage: bool) -> Vec<Bytes> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fast_upstream",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    chunks.extend(
        WORDS
            .iter()
            .map(|word| chunk(json!({"content": word}), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    if include_usage {
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fast_upstream",
            "choices": [],
            "usage": usage(),
        }));
    }
    let mut events: Vec<Bytes> = chunks
        .iter()
        .map(|chunk| Bytes::from(format!("data: {chunk}\n\n")))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn stream_response(events: Vec<Bytes>, interval: Duration) -> Response {
    let paced = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut events, first)| async move {
            let event = events.next()?;
            if !first && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            Some((Ok::<_, Infallible>(event), (events, false)))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(paced),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    let error = json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": null,
        "code": null,
    }});
    (StatusCode::BAD_REQUEST, Json(error)).into_response()
}

/// Written via a temporary file and a rename, so a reader never sees it half-written.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{port}\n"))?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(event: &Bytes) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        let data = text.strip_prefix("data: ").unwrap().trim_end();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn a_completion_carries_the_reply_and_its_usage() {
        let reply = completion("chatcmpl-1", 7, "m");
        assert_eq!(reply["model"], "m");
        assert_eq!(reply["choices"][0]["message"]["content"], WORDS.concat());
        assert_eq!(reply["usage"]["completion_tokens"], WORDS.len() as u64);
        assert_eq!(
            reply["usage"]["total_tokens"],
            PROMPT_TOKENS + WORDS.len() as u64
        );
    }

    #[test]
    fn a_stream_is_role_words_finish_usage_done() {
        let events = stream_events("chatcmpl-1", 7, "m", true);
        assert_eq!(events.len(), WORDS.len() + 4);
        assert!(events.iter().all(|event| event.ends_with(b"\n\n")));
        assert_eq!(
            parse(&events[0])["choices"][0]["delta"]["role"],
            "assistant"
        );
        let text: String = events[1..=WORDS.len()]
            .iter()
            .map(|event| {
                parse(event)["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(text, WORDS.concat());
        assert_eq!(
            parse(&events[WORDS.len() + 1])["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(
            parse(&events[WORDS.len() + 2])["usage"]["prompt_tokens"],
            PROMPT_TOKENS
        );
        assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
    }

    #[test]
    fn a_stream_has_no_usage_unless_asked() {
        let events = stream_events("chatcmpl-1", 7, "m", false);
        assert_eq!(events.len(), WORDS.len() + 3);
        assert!(
            !events
                .iter()
                .any(|event| event.windows(7).any(|w| w == b"\"usage\""))
        );
    }
}
