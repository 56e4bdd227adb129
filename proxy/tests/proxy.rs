//! End-to-end tests: the real router in front of a small in-process fake
//! upstream, both on OS-assigned ports, driven with a plain HTTP client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use switchyard::api::state::AppState;
use switchyard::config::file::Config;
use switchyard::server::router::router;
use switchyard::telemetry::outcome::{OutcomeSink, RequestOutcome};

#[derive(Clone)]
struct FakeUpstream {
    /// Lets a test hold a fake stream after its first chunk, to prove the proxy
    /// forwards that chunk before the upstream has finished.
    gate: Arc<Semaphore>,
    /// Requests per behaviour path (`/u/{behaviour}/v1/...`).
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// The last chat request body received.
    last_body: Arc<Mutex<Value>>,
    /// Gated streams whose body the proxy dropped (the client went away).
    dropped_streams: Arc<AtomicUsize>,
}

/// Counts a fake stream as dropped when its state goes away before the end.
struct DropSignal(Arc<AtomicUsize>, bool);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Every outcome the proxy reported.
#[derive(Default)]
struct Captured(Mutex<Vec<RequestOutcome>>);

impl OutcomeSink for Captured {
    fn report(&self, outcome: &RequestOutcome) {
        self.0.lock().unwrap().push(outcome.clone());
    }
}

async fn serve(app: Router) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn chunk(content: Value, finish_reason: Value) -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": content, "finish_reason": finish_reason}],
    });
    format!("data: {chunk}\n\n")
}

fn event_stream(
    parts: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header("x-mock-upstream", "fake")
        .body(Body::from_stream(parts))
        .unwrap()
}

/// An upstream whose behaviour is named by its path, so one model can have
/// upstreams that fail in different ways.
async fn behaviour_chat(
    State(fake): State<FakeUpstream>,
    Path(behaviour): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    *fake
        .hits
        .lock()
        .unwrap()
        .entry(behaviour.clone())
        .or_default() += 1;
    let error = |status: u16, code: &str| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("x-mock-upstream", behaviour.clone())],
            Json(
                json!({"error": {"message": code, "type": "server_error", "param": null, "code": code}}),
            ),
        )
    };
    match behaviour.as_str() {
        name if name.starts_with("s503") => error(503, "unavailable").into_response(),
        "s429" => {
            let mut response = error(429, "rate_limit_exceeded").into_response();
            response
                .headers_mut()
                .insert("retry-after-ms", "150".parse().unwrap());
            response
        }
        "bad" => error(400, "bad_request").into_response(),
        _ => fake_chat(State(fake), headers, Json(body)).await,
    }
}

async fn fake_chat(
    State(fake): State<FakeUpstream>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    *fake.last_body.lock().unwrap() = body.clone();
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let reply = format!("messages={} last={last}", messages.len());
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    match model.as_str() {
        "slow-headers" => tokio::time::sleep(Duration::from_secs(5)).await,
        "html-error" => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("x-mock-upstream", "fake")],
                "<html>down</html>",
            )
                .into_response();
        }
        "stall-stream" => {
            let first = chunk(
                json!({"role": "assistant", "content": "partial"}),
                Value::Null,
            );
            let parts = stream::iter([Ok(Bytes::from(first))]).chain(stream::pending());
            return event_stream(parts);
        }
        "cut-stream" => {
            let first = chunk(
                json!({"role": "assistant", "content": "partial"}),
                Value::Null,
            );
            // Paced, so the head and the first chunks leave before the connection dies.
            let parts = stream::iter([
                Ok(Bytes::from(first)),
                Ok(Bytes::from_static(b"data: {\"half")),
                Err(std::io::Error::other("upstream died")),
            ])
            .then(|part| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                part
            });
            return event_stream(parts);
        }
        "tool-call" => return tool_call_reply(body["stream"] == json!(true)),
        _ => {}
    }

    if body["stream"] == json!(true) {
        let mut frames = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for (i, word) in reply.split(' ').enumerate() {
            let delta = if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            frames.push(chunk(json!({"content": delta}), Value::Null));
        }
        frames.push(chunk(json!({}), json!("stop")));
        if body["stream_options"]["include_usage"] == json!(true) {
            let usage = json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
            });
            frames.push(format!("data: {usage}\n\n"));
        }
        frames.push("data: [DONE]\n\n".to_owned());
        let count = frames.len();
        let gated = model == "gated";
        let gate = fake.gate.clone();
        let signal = Arc::new(Mutex::new(DropSignal(fake.dropped_streams.clone(), false)));
        let parts = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| {
            let gate = gate.clone();
            let signal = signal.clone();
            async move {
                if gated && i == 1 {
                    gate.acquire().await.unwrap().forget();
                }
                if i + 1 == count {
                    signal.lock().unwrap().1 = true;
                }
                Ok::<_, std::io::Error>(Bytes::from(frame))
            }
        });
        return event_stream(parts);
    }

    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "seen": {
            "model": model,
            "authorization": header_text("authorization"),
            "request_id": header_text("x-request-id"),
            "tag": header_text("x-mock-tag"),
            "accept_encoding": header_text("accept-encoding"),
            "host": header_text("host"),
        },
    });
    ([("x-mock-upstream", "fake")], Json(completion)).into_response()
}

/// An assistant turn with text and two tool calls; streamed, the calls'
/// argument fragments interleave.
fn tool_call_reply(streaming: bool) -> Response {
    if !streaming {
        let completion = json!({
            "id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "tool-call",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                "role": "assistant", "content": "Let me look.", "refusal": null,
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "w", "arguments": "{\"c\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "v", "arguments": "{}"}},
                ],
            }}],
        });
        return ([("x-mock-upstream", "fake")], Json(completion)).into_response();
    }
    let call = |index: u64, id: Option<&str>, name: Option<&str>, arguments: &str| {
        let mut call = json!({"index": index, "function": {"arguments": arguments}});
        if let (Some(id), Some(name)) = (id, name) {
            call["id"] = json!(id);
            call["type"] = json!("function");
            call["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [call]}), Value::Null)
    };
    let frames = [
        chunk(
            json!({"role": "assistant", "content": "Let me look."}),
            Value::Null,
        ),
        call(0, Some("call_1"), Some("w"), ""),
        call(1, Some("call_2"), Some("v"), ""),
        call(0, None, None, "{\"c\":"),
        call(1, None, None, "{"),
        call(0, None, None, "1}"),
        call(1, None, None, "}"),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".to_owned(),
    ];
    event_stream(stream::iter(
        frames.map(|frame| Ok::<_, std::io::Error>(Bytes::from(frame))),
    ))
}

async fn fake_responses(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let seen = json!({
        "model": body["model"],
        "input": body["input"],
        "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
        "previous_response_id": body["previous_response_id"],
    });
    (
        [("x-mock-upstream", "native")],
        Json(json!({"object": "response", "seen": seen})),
    )
        .into_response()
}

struct Harness {
    base: String,
    http: reqwest::Client,
    fake: FakeUpstream,
    outcomes: Arc<Captured>,
}

async fn start() -> Harness {
    start_with("").await
}

/// `extra` is appended to the config, e.g. `[retry]` or `[health]` tables.
async fn start_with(extra: &str) -> Harness {
    let fake = FakeUpstream {
        gate: Arc::new(Semaphore::new(0)),
        hits: Arc::default(),
        last_body: Arc::default(),
        dropped_streams: Arc::default(),
    };
    let fake_state = fake.clone();
    let fake = Router::new()
        .route("/v1/chat/completions", post(fake_chat))
        .route("/v1/responses", post(fake_responses))
        .route("/u/{behaviour}/v1/chat/completions", post(behaviour_chat))
        .with_state(fake_state.clone());
    let fake_port = serve(fake).await;
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };

    let config = format!(
        r#"
[server]
max_body_bytes = 2048

[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:{fake_port}/v1"
api_key = "sk-upstream"
timeout_ms = 500
idle_timeout_ms = 300

[[upstreams]]
name = "native"
base_url = "http://127.0.0.1:{fake_port}/v1/"
responses = true

[[upstreams]]
name = "closed"
base_url = "http://127.0.0.1:{closed_port}/v1"

[[models]]
name = "chat"
upstreams = ["fake"]
upstream_model = "real-chat"

[[models]]
name = "native"
upstreams = ["native"]
upstream_model = "real-native"

[[models]]
name = "dead"
upstreams = ["closed"]

[[models]]
name = "dead-then-fake"
upstreams = ["closed", "fake"]
upstream_model = "chat"

[[models]]
name = "cut-with-fallback"
upstreams = ["fake"]
upstream_model = "cut-stream"
fallback_models = ["chat"]

[[models]]
name = "translated-fallback"
upstreams = ["s503"]
fallback_models = ["chat"]
"#
    );
    let mut text = config;
    for behaviour in ["s503", "s503b", "s429", "bad", "ok"] {
        text.push_str(&format!(
            "\n[[upstreams]]\nname = \"{behaviour}\"\nbase_url = \"http://127.0.0.1:{fake_port}/u/{behaviour}/v1\"\n"
        ));
    }
    for (name, upstreams) in [
        ("flaky", r#"["s503", "ok"]"#),
        ("limited", r#"["s429", "ok"]"#),
        ("all-down", r#"["s503", "s503b"]"#),
        ("refused", r#"["bad", "ok"]"#),
    ] {
        text.push_str(&format!(
            "\n[[models]]\nname = \"{name}\"\nupstreams = {upstreams}\n"
        ));
    }
    for fault in [
        "slow-headers",
        "html-error",
        "stall-stream",
        "cut-stream",
        "gated",
        "tool-call",
    ] {
        text.push_str(&format!(
            "\n[[models]]\nname = \"{fault}\"\nupstreams = [\"fake\"]\n"
        ));
    }
    text.push_str(extra);
    // Most tests count what reaches the upstream; the cache tests turn it on.
    if !extra.contains("[cache]") {
        text.push_str("\n[cache]\nbackend = \"off\"\n");
    }
    if !extra.contains("[ledger]") {
        text.push_str("\n[ledger]\nbackend = \"memory\"\n");
    }
    let config = Config::parse(&text, "test.toml", |_| None).unwrap();
    let outcomes = Arc::new(Captured::default());
    let state = AppState::new(config)
        .await
        .unwrap()
        .with_sink(outcomes.clone());
    let port = serve(router(Arc::new(state))).await;
    Harness {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        fake: fake_state,
        outcomes,
    }
}

impl Harness {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).json(body)
    }

    fn hits(&self, behaviour: &str) -> usize {
        self.fake
            .hits
            .lock()
            .unwrap()
            .get(behaviour)
            .copied()
            .unwrap_or(0)
    }

    /// The outcomes reported so far, waiting a little for `expected` of them:
    /// a stream the client dropped is reported once the proxy notices.
    async fn outcomes(&self, expected: usize) -> Vec<RequestOutcome> {
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let outcomes = self.outcomes.0.lock().unwrap().clone();
            if outcomes.len() >= expected || Instant::now() > until {
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Status, headers and the JSON body of a request, for tests that need all three.
    async fn json(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let response = self.post(path, body).send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {bytes:?}"));
        (status, headers, json)
    }
}

fn assert_openai_error(body: &Value, code: Option<&str>) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error: {body}"));
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.contains_key("param"), "{body}");
    assert_eq!(error["code"].as_str(), code, "{body}");
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn chat_is_relayed_with_model_rewritten_and_key_swapped() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", &chat_body("chat", false))
        .header("authorization", "Bearer client-key")
        .header("x-request-id", "req-123")
        .header("x-mock-tag", "t1")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(response.headers()["x-switchyard-upstream"], "fake");
    assert_eq!(response.headers()["x-mock-upstream"], "fake");
    let body: Value = response.json().await.unwrap();
    let seen = &body["seen"];
    assert_eq!(seen["model"], "real-chat");
    assert_eq!(seen["authorization"], "Bearer sk-upstream");
    assert_eq!(seen["request_id"], "req-123");
    assert_eq!(seen["tag"], "t1");
    assert_eq!(seen["accept_encoding"], Value::Null);
    assert_ne!(seen["host"].as_str().unwrap_or_default(), "");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "messages=1 last=hello there"
    );
}

#[tokio::test]
async fn invalid_request_id_is_replaced_by_a_uuid() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", &chat_body("chat", false))
        .header("x-request-id", "has spaces in it")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["seen"]["request_id"], id.as_str());
}

#[tokio::test]
async fn chat_stream_chunks_are_forwarded_before_the_upstream_finishes() {
    let h = start().await;
    let mut response = h
        .post("/v1/chat/completions", &chat_body("gated", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["x-mock-upstream"], "fake");

    // The upstream holds everything after its first chunk until the gate opens.
    let first = tokio::time::timeout(Duration::from_secs(2), response.chunk())
        .await
        .expect("first chunk was not forwarded while the upstream was still streaming")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"role\":\"assistant\""));
    h.fake.gate.add_permits(1);

    let mut text = String::from_utf8_lossy(&first).into_owned();
    while let Some(bytes) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn stalled_chat_stream_ends_with_an_error_event() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", &chat_body("stall-stream", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_openai_error(&error, Some("upstream_timeout"));
    assert!(text.starts_with("data: "), "{text}");
}

#[tokio::test]
async fn cut_chat_stream_ends_with_an_error_event_on_its_own_line() {
    let h = start().await;
    let response = h
        .post("/v1/chat/completions", &chat_body("cut-stream", true))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    // The half-sent last event is left out: a client would choke on it before
    // reaching the error event.
    assert!(!text.contains("{\"half"), "{text}");
    assert!(
        text.starts_with("data: {\"error\"") || text.contains("\n\ndata: {\"error\""),
        "{text}"
    );
    assert!(text.contains("upstream_disconnected"), "{text}");
}

#[tokio::test]
async fn non_json_upstream_error_keeps_status_and_is_wrapped() {
    let h = start().await;
    let (status, headers, body) = h
        .json("/v1/chat/completions", &chat_body("html-error", false))
        .await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-mock-upstream"], "fake");
    assert_eq!(body["error"]["message"], "<html>down</html>");
    assert_eq!(body["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_one_is_504() {
    let h = start().await;
    let (status, headers, body) = h
        .json("/v1/chat/completions", &chat_body("dead", false))
        .await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-switchyard-upstream"], "closed");
    assert_openai_error(&body, Some("upstream_unreachable"));

    let (status, _, body) = h
        .json("/v1/chat/completions", &chat_body("slow-headers", false))
        .await;
    assert_eq!(status, 504);
    assert_openai_error(&body, Some("upstream_timeout"));
}

#[tokio::test]
async fn client_errors_use_the_openai_format() {
    let h = start().await;
    let send_raw = |path: &str, body: &'static str| {
        h.http
            .post(format!("{}{path}", h.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    for (body, param) in [
        ("{not json", None),
        ("[1, 2]", None),
        (r#"{"messages": []}"#, Some("model")),
        (r#"{"model": 7, "messages": []}"#, Some("model")),
        (r#"{"model": "chat", "messages": "hi"}"#, Some("messages")),
        (
            r#"{"model": "chat", "messages": [], "stream": "yes"}"#,
            Some("stream"),
        ),
    ] {
        let response = send_raw("/v1/chat/completions", body).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert!(response.headers().contains_key("x-request-id"));
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(json["error"]["param"].as_str(), param, "{body}");
    }

    let (status, _, body) = h
        .json("/v1/chat/completions", &chat_body("no-such-model", false))
        .await;
    assert_eq!(status, 404);
    assert_openai_error(&body, Some("model_not_found"));
    assert_eq!(body["error"]["param"], "model");

    let big = format!(
        r#"{{"model": "chat", "messages": [], "pad": "{}"}}"#,
        "x".repeat(4096)
    );
    let response = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, Some("request_too_large"));

    // Without a Content-Length the limit is only hit while reading the body.
    let pieces = (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512])));
    let response = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .body(reqwest::Body::wrap_stream(stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_openai_error(&response.json().await.unwrap(), Some("request_too_large"));

    let response = h
        .http
        .get(format!("{}/v1/nothing", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    assert_openai_error(&response.json().await.unwrap(), Some("unknown_url"));

    let response = h
        .http
        .get(format!("{}/v1/chat/completions", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_openai_error(&response.json().await.unwrap(), Some("method_not_allowed"));
}

#[tokio::test]
async fn info_endpoints_describe_the_configuration_without_keys() {
    let h = start().await;
    let health: Value = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));

    let text = h
        .http
        .get(format!("{}/status", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("sk-upstream"), "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["upstreams"][0]["name"], "fake");
    assert_eq!(status["upstreams"][1]["responses"], true);
    assert_eq!(
        status["models"][0],
        json!({"name": "chat", "upstreams": ["fake"]})
    );
    assert!(status["uptime_seconds"].is_u64());
    assert!(status["version"].is_string());

    let models: Value = h
        .http
        .get(format!("{}/v1/models", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "chat");
    assert_eq!(models["data"][0]["owned_by"], "switchyard");
}

#[tokio::test]
async fn responses_are_passed_through_to_a_responses_upstream() {
    let h = start().await;
    let request =
        json!({"model": "native", "input": "hi", "previous_response_id": "resp_upstream"});
    let response = h
        .post("/v1/responses", &request)
        .header("authorization", "Bearer mine")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-mock-upstream"], "native");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["seen"]["model"], "real-native");
    assert_eq!(body["seen"]["authorization"], "Bearer mine");
    assert_eq!(body["seen"]["previous_response_id"], "resp_upstream");
}

#[tokio::test]
async fn translated_responses_continue_a_conversation() {
    let h = start().await;
    let (status, headers, first) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "one", "instructions": "be brief"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "fake");
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    // The instructions became a system message: two messages went upstream.
    assert_eq!(
        first["output"][0]["content"][0]["text"],
        "messages=2 last=one"
    );

    let (_, _, second) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "two", "previous_response_id": id}),
        )
        .await;
    // user "one", assistant reply, user "two"; the old instructions are not carried over.
    assert_eq!(
        second["output"][0]["content"][0]["text"],
        "messages=3 last=two"
    );

    let (status, _, body) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "x", "previous_response_id": "resp_unknown"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_openai_error(&body, Some("previous_response_not_found"));
    assert_eq!(body["error"]["param"], "previous_response_id");
}

fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(json) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(json).unwrap();
                }
            }
            (event, data)
        })
        .collect()
}

#[tokio::test]
async fn translated_responses_stream_and_remember_the_reply() {
    let h = start().await;
    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "chat", "input": "hello world", "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    for (position, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], position);
    }
    let deltas: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "messages=1 last=hello world");

    let completed = &events.last().unwrap().1["response"];
    let id = completed["id"].as_str().unwrap();
    let (_, _, next) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "again", "previous_response_id": id}),
        )
        .await;
    assert_eq!(
        next["output"][0]["content"][0]["text"],
        "messages=3 last=again"
    );
}

#[tokio::test]
async fn broken_translated_stream_ends_with_response_failed_and_is_not_stored() {
    let h = start().await;
    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "cut-stream", "input": "hi", "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let [.., error, failed] = names.as_slice() else {
        panic!("too few events: {names:?}");
    };
    assert_eq!([*error, *failed], ["error", "response.failed"]);
    let (_, error) = &events[events.len() - 2];
    assert_eq!(error["code"], "upstream_disconnected");
    let (_, failed) = events.last().unwrap();
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "server_error");
    assert!(!names.contains(&"response.completed"));
    // Every item the client saw added was also done.
    let added = names
        .iter()
        .filter(|n| **n == "response.output_item.added")
        .count();
    let done = names
        .iter()
        .filter(|n| **n == "response.output_item.done")
        .count();
    assert_eq!(added, done, "{names:?}");
    let created_id = events[0].1["response"]["id"].as_str().unwrap();
    let (status, _, _) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "x", "previous_response_id": created_id}),
        )
        .await;
    assert_eq!(status, 404);
}

/// The id of the response a Responses call answered with, streamed or whole.
async fn tool_call_response(h: &Harness, streaming: bool, store: bool) -> Value {
    let request = json!({"model": "tool-call", "input": "weather?", "stream": streaming,
                         "store": store});
    if !streaming {
        let (status, _, body) = h.json("/v1/responses", &request).await;
        assert_eq!(status, 200, "{body}");
        return body;
    }
    let response = h.post("/v1/responses", &request).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "response.completed", "{data}");
    data["response"].clone()
}

fn last_upstream_messages(h: &Harness) -> Value {
    h.fake.last_body.lock().unwrap()["messages"].clone()
}

/// The chat messages a continued tool turn must reach the upstream as.
fn tool_turn_messages() -> Value {
    json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "v", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    ])
}

fn tool_outputs() -> Vec<Value> {
    vec![
        json!({"type": "function_call_output", "call_id": "call_1", "output": "sunny"}),
        json!({"type": "function_call_output", "call_id": "call_2", "output": "noon"}),
    ]
}

#[tokio::test]
async fn translated_tool_calls_are_remembered_for_the_next_turn() {
    let h = start().await;
    for streaming in [false, true] {
        let first = tool_call_response(&h, streaming, true).await;
        let id = first["id"].as_str().unwrap();
        let (status, _, body) = h
            .json(
                "/v1/responses",
                &json!({"model": "chat", "input": tool_outputs(), "previous_response_id": id}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            last_upstream_messages(&h),
            tool_turn_messages(),
            "streaming: {streaming}"
        );
    }
}

#[tokio::test]
async fn item_references_resolve_to_the_items_the_proxy_produced() {
    let h = start().await;
    for streaming in [false, true] {
        let first = tool_call_response(&h, streaming, true).await;
        let ids: Vec<&str> = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 3, "{first}");
        let mut input = vec![
            json!({"role": "user", "content": "weather?"}),
            json!({"type": "item_reference", "id": ids[0]}),
            json!({"type": "item_reference", "id": ids[1]}),
            // `type` is optional on an item reference.
            json!({"id": ids[2]}),
        ];
        input.extend(tool_outputs());
        let (status, _, body) = h
            .json("/v1/responses", &json!({"model": "chat", "input": input}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            last_upstream_messages(&h),
            tool_turn_messages(),
            "streaming: {streaming}"
        );
    }

    let unknown = json!({"model": "chat", "input": [{"type": "item_reference", "id": "msg_nope"}]});
    let (status, _, body) = h.json("/v1/responses", &unknown).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"message": "Item with id 'msg_nope' not found.",
                         "type": "invalid_request_error", "param": "input", "code": null}})
    );

    // `store: false` responses keep nothing to refer to.
    let unstored = tool_call_response(&h, false, false).await;
    let id = unstored["output"][1]["id"].as_str().unwrap();
    let (status, _, _) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": [{"type": "item_reference", "id": id}]}),
        )
        .await;
    assert_eq!(status, 404);

    // A Responses upstream resolves references itself.
    let native = json!({"model": "native", "input": [{"type": "item_reference", "id": "msg_up"}]});
    let (status, _, body) = h.json("/v1/responses", &native).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["seen"]["input"],
        json!([{"type": "item_reference", "id": "msg_up"}])
    );
}

const RETRY_TWICE: &str =
    "\n[retry]\nattempts_per_upstream = 2\nbase_backoff_ms = 1\nmax_backoff_ms = 5\n";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_503_is_retried_then_falls_back_to_the_next_upstream() {
    let h = start_with(RETRY_TWICE).await;
    let (status, headers, body) = h
        .json("/v1/chat/completions", &chat_body("flaky", false))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-switchyard-upstream"), "ok");
    assert_eq!(header(&headers, "x-switchyard-attempts"), "3");
    assert_eq!((h.hits("s503"), h.hits("ok")), (2, 1));

    let outcomes = h.outcomes(1).await;
    let outcome = &outcomes[0];
    assert_eq!(
        (outcome.attempts, outcome.retries, outcome.fallbacks),
        (3, 1, 1)
    );
    assert_eq!(outcome.upstream.as_deref(), Some("ok"));
    assert_eq!(outcome.status, 200);
    assert_eq!((outcome.prompt_tokens, outcome.completion_tokens), (1, 2));
}

#[tokio::test]
async fn a_429_waits_for_retry_after_before_the_same_upstream_is_tried_again() {
    let h = start_with(RETRY_TWICE).await;
    let started = Instant::now();
    let (status, headers, _) = h
        .json("/v1/chat/completions", &chat_body("limited", false))
        .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(header(&headers, "x-switchyard-attempts"), "3");
    assert_eq!((h.hits("s429"), h.hits("ok")), (2, 1));
}

#[tokio::test]
async fn connect_refused_falls_back_without_retrying_by_default() {
    let h = start().await;
    let (status, headers, body) = h
        .json("/v1/chat/completions", &chat_body("dead-then-fake", false))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-switchyard-upstream"), "fake");
    assert_eq!(header(&headers, "x-switchyard-attempts"), "2");
    assert_eq!(body["seen"]["model"], "chat");
}

#[tokio::test]
async fn exhausted_attempts_return_the_last_upstream_error() {
    let h = start_with(RETRY_TWICE).await;
    let (status, headers, body) = h
        .json("/v1/chat/completions", &chat_body("all-down", false))
        .await;
    assert_eq!(status, 503);
    assert_openai_error(&body, Some("unavailable"));
    // max_attempts (3) stops the loop: two tries on s503, one on s503b.
    assert_eq!(header(&headers, "x-switchyard-attempts"), "3");
    assert_eq!(header(&headers, "x-switchyard-upstream"), "s503b");
    assert_eq!((h.hits("s503"), h.hits("s503b")), (2, 1));
    let outcome = &h.outcomes(1).await[0];
    assert_eq!(outcome.status, 503);
    assert_eq!(outcome.error_type.as_deref(), Some("unavailable"));
    assert_eq!(outcome.total_tokens(), 0);
}

#[tokio::test]
async fn a_client_error_is_returned_at_once() {
    let h = start_with(RETRY_TWICE).await;
    let (status, headers, _) = h
        .json("/v1/chat/completions", &chat_body("refused", false))
        .await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "x-switchyard-attempts"), "1");
    assert_eq!((h.hits("bad"), h.hits("ok")), (1, 0));
}

#[tokio::test]
async fn failing_upstreams_are_ejected_and_shown_in_status() {
    let h = start_with("\n[health]\nfailure_threshold = 2\ncooldown_ms = 60000\n").await;
    // Round robin puts s503 first on every other request, and it fails each time.
    for _ in 0..4 {
        let (status, _, _) = h
            .json("/v1/chat/completions", &chat_body("flaky", false))
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(h.hits("s503"), 2);
    // Its turn again, but it is ejected now and left out.
    let (_, headers, _) = h
        .json("/v1/chat/completions", &chat_body("flaky", false))
        .await;
    assert_eq!(header(&headers, "x-switchyard-attempts"), "1");
    assert_eq!(h.hits("s503"), 2);

    let status: Value = h
        .http
        .get(format!("{}/status", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upstream = |name: &str| {
        status["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap()
    };
    let ejected = upstream("s503");
    assert_eq!(ejected["healthy"], false);
    assert_eq!(ejected["consecutive_failures"], 2);
    assert!(ejected["ejected_until_ms"].as_u64().unwrap() > 0);
    let fine = upstream("ok");
    assert_eq!(fine["healthy"], true);
    assert_eq!(fine["ejected_until_ms"], Value::Null);
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_byte_never_falls_back() {
    let h = start().await;
    let response = h
        .post(
            "/v1/chat/completions",
            &chat_body("cut-with-fallback", true),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(response.headers(), "x-switchyard-attempts"), "1");
    let text = response.text().await.unwrap();
    assert!(text.contains("upstream_disconnected"), "{text}");
    assert!(!text.contains("messages="), "no fallback content: {text}");
    let outcome = &h.outcomes(1).await[0];
    assert_eq!(outcome.status, 502);
    assert_eq!(outcome.error_type.as_deref(), Some("upstream_disconnected"));
    assert_eq!(outcome.attempts, 1);
}

#[tokio::test]
async fn translated_responses_fall_back_too() {
    let h = start().await;
    let (status, headers, body) = h
        .json(
            "/v1/responses",
            &json!({"model": "translated-fallback", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-switchyard-upstream"), "fake");
    assert_eq!(header(&headers, "x-switchyard-attempts"), "2");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "messages=1 last=hi"
    );
    assert_eq!(body["usage"]["input_tokens"], 1);
}

fn data_chunks(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn usage_is_requested_upstream_and_stripped_for_a_client_that_did_not_ask() {
    let h = start().await;
    let mut request = chat_body("chat", true);
    request["metadata"] = json!({"k": "v"});
    request["user"] = json!("u-1");
    let text = h
        .post("/v1/chat/completions", &request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seen = h.fake.last_body.lock().unwrap().clone();
    assert_eq!(seen["stream_options"], json!({"include_usage": true}));
    assert_eq!(seen["metadata"], json!({"k": "v"}));
    assert_eq!(seen["user"], "u-1");
    let chunks = data_chunks(&text);
    assert!(
        chunks.iter().all(|c| c["choices"] != json!([])),
        "usage chunk leaked: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    request["stream_options"] = json!({"include_usage": true});
    let text = h
        .post("/v1/chat/completions", &request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let usage_chunks: Vec<Value> = data_chunks(&text)
        .into_iter()
        .filter(|c| c["choices"] == json!([]))
        .collect();
    assert_eq!(usage_chunks.len(), 1, "{text}");
    assert_eq!(usage_chunks[0]["usage"]["total_tokens"], 5);

    let outcomes = h.outcomes(2).await;
    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes {
        assert!(outcome.stream);
        assert_eq!(outcome.status, 200);
        assert_eq!((outcome.prompt_tokens, outcome.completion_tokens), (2, 3));
        assert!(outcome.ttft.is_some());
        assert!(outcome.upstream_time <= outcome.latency);
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_and_is_recorded() {
    let h = start().await;
    let mut response = h
        .post("/v1/chat/completions", &chat_body("gated", true))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("assistant"));
    drop(response);

    let outcomes = h.outcomes(1).await;
    assert_eq!(outcomes.len(), 1, "reported once the client left");
    let outcome = &outcomes[0];
    assert_eq!(outcome.status, 499);
    assert!(outcome.stream);
    // "hello there" was the input; no content delta had been forwarded yet.
    assert_eq!((outcome.prompt_tokens, outcome.completion_tokens), (2, 0));

    let until = Instant::now() + Duration::from_secs(3);
    while h.fake.dropped_streams.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.fake.dropped_streams.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_model_request_is_reported_once_even_when_refused() {
    let h = start().await;
    let send_raw = |body: &'static str| {
        h.http
            .post(format!("{}/v1/chat/completions", h.base))
            .header("content-type", "application/json")
            .header("x-request-id", "rid-1")
            .body(body)
            .send()
    };
    assert_eq!(send_raw("{not json").await.unwrap().status(), 400);
    let response = h
        .post("/v1/responses", &json!({"model": "nope", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(header(response.headers(), "x-switchyard-attempts"), "0");
    assert!(response.headers().get("x-switchyard-upstream").is_none());
    h.http
        .get(format!("{}/v1/models", h.base))
        .send()
        .await
        .unwrap();

    let outcomes = h.outcomes(2).await;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].request_id, "rid-1");
    assert_eq!(outcomes[0].status, 400);
    assert_eq!(outcomes[0].tenant, "anonymous");
    assert_eq!(outcomes[1].status, 404);
    assert_eq!(outcomes[1].model, "nope");
    assert_eq!(outcomes[1].error_type.as_deref(), Some("model_not_found"));
    assert_eq!(outcomes[1].attempts, 0);
}

#[tokio::test]
async fn the_in_flight_gauge_counts_an_open_stream() {
    let h = start().await;
    let gauge = || async {
        let text = h
            .http
            .get(format!("{}/metrics", h.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("switchyard_in_flight_requests "))
            .map(str::to_owned)
    };
    let mut response = h
        .post("/v1/chat/completions", &chat_body("gated", true))
        .send()
        .await
        .unwrap();
    response.chunk().await.unwrap().unwrap();
    assert_eq!(gauge().await.as_deref(), Some("1"));
    h.fake.gate.add_permits(1);
    while response.chunk().await.unwrap().is_some() {}
    assert_eq!(gauge().await.as_deref(), Some("0"));
}

const MEMORY_CACHE: &str = "\n[cache]\nbackend = \"memory\"\n";

#[tokio::test]
async fn a_client_that_gives_up_on_a_whole_answer_is_charged_the_prompt_it_sent() {
    let h = start().await;
    let gave_up = h
        .post("/v1/chat/completions", &chat_body("slow-headers", false))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());

    let outcomes = h.outcomes(1).await;
    assert_eq!(outcomes.len(), 1, "reported once the client left");
    let outcome = &outcomes[0];
    assert_eq!((outcome.status, outcome.stream), (499, false));
    // The upstream was sent "hello there" whether or not the client waited for its answer.
    assert_eq!((outcome.prompt_tokens, outcome.completion_tokens), (2, 0));
}

/// Reads a stream up to `[DONE]` and hangs up there, as the OpenAI SDK does.
async fn read_until_done(mut response: reqwest::Response) -> String {
    let mut text = String::new();
    while let Some(bytes) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&bytes));
        if text.contains("data: [DONE]") {
            break;
        }
    }
    text
}

#[tokio::test]
async fn a_completed_stream_is_stored_and_replayed_byte_for_byte() {
    let h = start_with(MEMORY_CACHE).await;
    let request = chat_body("chat", true);
    let first = h
        .post("/v1/chat/completions", &request)
        .send()
        .await
        .unwrap();
    assert_eq!(header(first.headers(), "x-switchyard-cache"), "MISS");
    let first = read_until_done(first).await;

    let second = h
        .post("/v1/chat/completions", &request)
        .send()
        .await
        .unwrap();
    assert_eq!(header(second.headers(), "x-switchyard-cache"), "HIT");
    assert_eq!(header(second.headers(), "x-switchyard-attempts"), "0");
    assert_eq!(header(second.headers(), "x-switchyard-upstream"), "fake");
    assert!(header(second.headers(), "content-type").starts_with("text/event-stream"));
    assert_eq!(second.text().await.unwrap(), first);

    let outcomes = h.outcomes(2).await;
    assert_eq!(
        outcomes[0].status, 200,
        "hanging up after [DONE] is not a cut"
    );
    assert_eq!(
        outcomes[1].cache,
        switchyard::shared::labels::CacheResult::Hit
    );
    assert_eq!(outcomes[1].attempts, 0);
    assert_eq!(
        (outcomes[1].prompt_tokens, outcomes[1].completion_tokens),
        (outcomes[0].prompt_tokens, outcomes[0].completion_tokens)
    );
}

#[tokio::test]
async fn whole_answers_hit_and_cut_streams_are_never_stored() {
    let h = start_with(MEMORY_CACHE).await;
    let request = chat_body("chat", false);
    let (_, headers, first) = h.json("/v1/chat/completions", &request).await;
    assert_eq!(header(&headers, "x-switchyard-cache"), "MISS");
    let (_, headers, second) = h.json("/v1/chat/completions", &request).await;
    assert_eq!(header(&headers, "x-switchyard-cache"), "HIT");
    assert_eq!(first, second);

    let cut = chat_body("cut-stream", true);
    for _ in 0..2 {
        let response = h.post("/v1/chat/completions", &cut).send().await.unwrap();
        assert_eq!(header(response.headers(), "x-switchyard-cache"), "MISS");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("upstream_disconnected")
        );
    }
}

#[tokio::test]
async fn metrics_count_models_the_config_does_not_serve_under_one_label() {
    let h = start().await;
    let metrics = || async {
        let url = format!("{}/metrics", h.base);
        h.http.get(url).send().await.unwrap().text().await.unwrap()
    };
    assert_eq!(
        h.post("/v1/chat/completions", &chat_body("chat", false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let unknown = |index: usize| chat_body(&format!("made-up-{index}"), false);
    assert_eq!(
        h.post("/v1/chat/completions", &unknown(0))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let before = metrics().await.lines().count();
    for index in 1..=200 {
        let response = h
            .post("/v1/chat/completions", &unknown(index))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let text = metrics().await;
    assert_eq!(text.lines().count(), before, "new series appeared");
    assert!(
        !text.contains("made-up-"),
        "a client's model name became a label"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("switchyard_requests_total")
                && line.contains("model=\"unknown\"")
                && line.ends_with(" 201"))
    );
    // A served model keeps its own label.
    assert!(text.contains("model=\"chat\""));
}
