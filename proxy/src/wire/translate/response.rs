//! Response translation: a whole chat completion becomes a Response object
//! (the upstream's reasoning a reasoning item first, its text's logprobs on
//! the output_text part), echoing the request's fields, with the helpers the
//! stream translation builds the same objects with.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::wire::translate::request::{effective_strict, present, wants_logprobs};

/// How a response ended, derived from the chat `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Incomplete(&'static str),
}

impl Outcome {
    pub(crate) fn from_finish_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Self::Incomplete("max_output_tokens"),
            Some("content_filter") => Self::Incomplete("content_filter"),
            _ => Self::Completed,
        }
    }

    pub(crate) fn item_status(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Incomplete(_) => "incomplete",
        }
    }
}

/// Lifecycle state written into a Response object.
pub(crate) enum Status<'a> {
    InProgress,
    Finished(Outcome),
    Failed { message: &'a str },
}

/// The request fields every Response object echoes back, computed once per request.
pub(crate) fn echo_fields(req: &Value) -> Map<String, Value> {
    let echo = |key: &str, default: Value| present(req, key).cloned().unwrap_or(default);
    let mut fields = Map::new();
    fields.insert("model".into(), echo("model", Value::from("")));
    fields.insert("instructions".into(), echo("instructions", Value::Null));
    fields.insert("metadata".into(), echo("metadata", json!({})));
    fields.insert(
        "previous_response_id".into(),
        echo("previous_response_id", Value::Null),
    );
    fields.insert("temperature".into(), echo("temperature", Value::Null));
    fields.insert("top_p".into(), echo("top_p", Value::Null));
    fields.insert(
        "max_output_tokens".into(),
        echo("max_output_tokens", Value::Null),
    );
    fields.insert("tools".into(), echoed_tools(req));
    fields.insert(
        "tool_choice".into(),
        echo("tool_choice", Value::from("auto")),
    );
    fields.insert(
        "parallel_tool_calls".into(),
        echo("parallel_tool_calls", Value::Bool(true)),
    );
    fields.insert(
        "text".into(),
        echo("text", json!({"format": {"type": "text"}})),
    );
    fields.insert("store".into(), echo("store", Value::Bool(true)));
    fields.insert("user".into(), echo("user", Value::Null));
    // The effort goes upstream as `reasoning_effort` (a summary is refused).
    fields.insert("reasoning".into(), echo("reasoning", Value::Null));
    fields.insert("truncation".into(), Value::from("disabled"));
    fields.insert("top_logprobs".into(), echo("top_logprobs", Value::Null));
    fields
}

/// The request's tools, function tools with the `strict` they were sent with.
fn echoed_tools(req: &Value) -> Value {
    let Some(Value::Array(tools)) = present(req, "tools") else {
        return json!([]);
    };
    let tools = tools.iter().map(|tool| match tool {
        Value::Object(fields) if tool.get("type").and_then(Value::as_str) == Some("function") => {
            let mut fields = fields.clone();
            fields.insert("strict".into(), Value::Bool(effective_strict(tool)));
            Value::Object(fields)
        }
        other => other.clone(),
    });
    Value::Array(tools.collect())
}

pub(crate) fn response_object(
    echo: &Map<String, Value>,
    id: &str,
    created_at: i64,
    status: Status<'_>,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let (status, incomplete_details, error) = match status {
        Status::InProgress => ("in_progress", Value::Null, Value::Null),
        Status::Finished(Outcome::Completed) => ("completed", Value::Null, Value::Null),
        Status::Finished(Outcome::Incomplete(reason)) => {
            ("incomplete", json!({"reason": reason}), Value::Null)
        }
        // `error.code` on a Response is a closed set; an upstream failure is a
        // `server_error` from the client's point of view.
        Status::Failed { message } => (
            "failed",
            Value::Null,
            json!({"code": "server_error", "message": message}),
        ),
    };
    let mut response = echo.clone();
    response.insert("id".into(), Value::from(id));
    response.insert("object".into(), Value::from("response"));
    response.insert("created_at".into(), Value::from(created_at));
    response.insert("status".into(), Value::from(status));
    response.insert("error".into(), error);
    response.insert("incomplete_details".into(), incomplete_details);
    response.insert("output".into(), Value::Array(output));
    response.insert("usage".into(), usage);
    Value::Object(response)
}

pub(crate) fn responses_usage(chat_usage: Option<&Value>) -> Value {
    let Some(usage) = chat_usage.filter(|u| u.is_object()) else {
        return Value::Null;
    };
    let count = |path: &[&str]| {
        path.iter()
            .try_fold(usage, |v, key| v.get(key))
            .and_then(Value::as_u64)
    };
    let input = count(&["prompt_tokens"]).unwrap_or(0);
    let output = count(&["completion_tokens"]).unwrap_or(0);
    json!({
        "input_tokens": input,
        // Newer SDKs require `cache_write_tokens` alongside `cached_tokens`.
        "input_tokens_details": {
            "cached_tokens": count(&["prompt_tokens_details", "cached_tokens"]).unwrap_or(0),
            "cache_write_tokens": count(&["prompt_tokens_details", "cache_write_tokens"]).unwrap_or(0),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": count(&["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
        },
        "total_tokens": count(&["total_tokens"]).unwrap_or(input.saturating_add(output)),
    })
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// An `output_text` part; `logprobs` in the part's shape (`part_logprobs`).
pub(crate) fn output_text_part(text: &str, logprobs: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

pub(crate) fn reasoning_text_part(text: &str) -> Value {
    json!({"type": "reasoning_text", "text": text})
}

/// A reasoning item: the reasoning text a chat upstream sent, no summary
/// (chat has none) and nothing encrypted.
pub(crate) fn reasoning_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({
        "type": "reasoning",
        "id": id,
        "summary": [],
        "content": content,
        "status": status,
    })
}

/// The reasoning of a chat message or delta: `reasoning_content` (DeepSeek,
/// vLLM before 0.10) or `reasoning` (vLLM since, and others). Servers that
/// send both send the same text, so only one is taken.
pub(crate) fn chat_reasoning(message: Option<&Value>) -> Option<&str> {
    ["reasoning_content", "reasoning"].iter().find_map(|key| {
        message
            .and_then(|m| m.get(*key))
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    })
}

/// The logprobs of a chat choice's content (`choice.logprobs.content`), in
/// the shape of an `output_text` part's: token, logprob, bytes, and the top
/// alternatives with the same three. Entries without a token or a logprob
/// are left out; missing bytes are the token's own UTF-8 bytes.
pub(crate) fn part_logprobs(choice: Option<&Value>) -> Vec<Value> {
    let entries = choice
        .and_then(|c| c.get("logprobs"))
        .and_then(|l| l.get("content"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    entries
        .iter()
        .filter_map(|entry| {
            let mut logprob = token_logprob(entry)?;
            let top: Vec<Value> = entry
                .get("top_logprobs")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(token_logprob)
                .map(Value::Object)
                .collect();
            logprob.insert("top_logprobs".into(), Value::Array(top));
            Some(Value::Object(logprob))
        })
        .collect()
}

fn token_logprob(entry: &Value) -> Option<Map<String, Value>> {
    let token = entry.get("token").and_then(Value::as_str)?;
    let logprob = entry.get("logprob").filter(|l| l.is_number())?;
    let bytes = match entry.get("bytes") {
        Some(Value::Array(bytes)) => Value::Array(bytes.clone()),
        _ => Value::from(token.as_bytes().to_vec()),
    };
    let mut fields = Map::new();
    fields.insert("token".into(), Value::from(token));
    fields.insert("logprob".into(), logprob.clone());
    fields.insert("bytes".into(), bytes);
    Some(fields)
}

/// Logprobs of the part's shape in the shape of the text events'
/// (`response.output_text.delta` / `.done`): token and logprob, and the top
/// alternatives' token and logprob; the events carry no bytes.
pub(crate) fn event_logprobs(logprobs: &[Value]) -> Vec<Value> {
    let slim =
        |entry: &Value| json!({"token": entry.get("token"), "logprob": entry.get("logprob")});
    logprobs
        .iter()
        .map(|entry| {
            let mut event = slim(entry);
            let top: Vec<Value> = entry
                .get("top_logprobs")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(slim)
                .collect();
            event["top_logprobs"] = Value::Array(top);
            event
        })
        .collect()
}

pub(crate) fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

pub(crate) fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

pub(crate) fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// Chat `content` is normally a string, but some upstreams return text parts.
pub(crate) fn chat_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

pub fn chat_to_responses_response(
    chat: &Value,
    req: &Value,
    response_id: &str,
    created_at: i64,
) -> Value {
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first());
    let message = choice.and_then(|c| c.get("message"));
    let outcome = Outcome::from_finish_reason(
        choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str),
    );
    let item_status = outcome.item_status();

    let text = chat_text(message.and_then(|m| m.get("content")));
    let refusal = message
        .and_then(|m| m.get("refusal"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let tool_calls: &[Value] = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    let logprobs = if wants_logprobs(req) {
        part_logprobs(choice)
    } else {
        Vec::new()
    };

    let mut output = Vec::new();
    if let Some(reasoning) = chat_reasoning(message) {
        // The answer ended during the reasoning only when nothing followed it.
        let cut_short = text.is_empty() && refusal.is_none() && tool_calls.is_empty();
        let status = if cut_short { item_status } else { "completed" };
        output.push(reasoning_item(
            &new_id("rs"),
            status,
            vec![reasoning_text_part(reasoning)],
        ));
    }
    let mut content = Vec::new();
    if !text.is_empty() || !logprobs.is_empty() {
        content.push(output_text_part(&text, &logprobs));
    }
    if let Some(refusal) = refusal {
        content.push(refusal_part(refusal));
    }
    // A pure tool-call turn has no message item, but every other reply has one,
    // even when empty, so clients always find the assistant message.
    if !content.is_empty() || tool_calls.is_empty() {
        if content.is_empty() {
            content.push(output_text_part("", &[]));
        }
        output.push(message_item(&new_id("msg"), item_status, content));
    }
    for call in tool_calls {
        let function = call.get("function");
        let field = |key: &str| function.and_then(|f| f.get(key)).and_then(Value::as_str);
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| new_id("call"), str::to_owned);
        output.push(function_call_item(
            &new_id("fc"),
            &call_id,
            field("name").unwrap_or_default(),
            field("arguments").unwrap_or_default(),
            item_status,
        ));
    }

    response_object(
        &echo_fields(req),
        response_id,
        created_at,
        Status::Finished(outcome),
        output,
        responses_usage(chat.get("usage")),
    )
}

/// Concatenation of every `output_text` part of every message item.
pub fn assistant_text(response: &Value) -> String {
    let items = response
        .get("output")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    items
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}
