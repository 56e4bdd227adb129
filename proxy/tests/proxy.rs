//! End-to-end tests: the real router in front of a small in-process fake
//! upstream, both on OS-assigned ports, driven with a plain HTTP client.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use switchyard::config::Config;
use switchyard::routes::router;
use switchyard::state::AppState;

/// Lets a test hold a fake stream after its first chunk, to prove the proxy
/// forwards that chunk before the upstream has finished.
#[derive(Clone)]
struct FakeUpstream {
    gate: Arc<Semaphore>,
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

async fn fake_chat(
    State(fake): State<FakeUpstream>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
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
        frames.push("data: [DONE]\n\n".to_owned());
        let gated = model == "gated";
        let gate = fake.gate.clone();
        let parts = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| {
            let gate = gate.clone();
            async move {
                if gated && i == 1 {
                    gate.acquire().await.unwrap().forget();
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

async fn fake_responses(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let seen = json!({
        "model": body["model"],
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
    gate: Arc<Semaphore>,
}

async fn start() -> Harness {
    let gate = Arc::new(Semaphore::new(0));
    let fake = Router::new()
        .route("/v1/chat/completions", post(fake_chat))
        .route("/v1/responses", post(fake_responses))
        .with_state(FakeUpstream { gate: gate.clone() });
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
"#
    );
    let mut text = config;
    for fault in [
        "slow-headers",
        "html-error",
        "stall-stream",
        "cut-stream",
        "gated",
    ] {
        text.push_str(&format!(
            "\n[[models]]\nname = \"{fault}\"\nupstreams = [\"fake\"]\n"
        ));
    }
    let config = Config::parse(&text, "test.toml", |_| None).unwrap();
    let state = Arc::new(AppState::new(config).unwrap());
    let port = serve(router(state)).await;
    Harness {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        gate,
    }
}

impl Harness {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).json(body)
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
    h.gate.add_permits(1);

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
    assert!(text.contains("data: {\"half\n\ndata: {\"error\""), "{text}");
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
async fn broken_translated_stream_ends_with_an_error_event_and_is_not_stored() {
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
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["code"], "upstream_disconnected");
    assert!(events.iter().all(|(name, _)| name != "response.completed"));
    let created_id = events[0].1["response"]["id"].as_str().unwrap();
    let (status, _, _) = h
        .json(
            "/v1/responses",
            &json!({"model": "chat", "input": "x", "previous_response_id": created_id}),
        )
        .await;
    assert_eq!(status, 404);
}
