//! Serves the OpenAI Responses API on top of an upstream that only speaks Chat
//! Completions: requests are rewritten into chat requests, and chat replies
//! (whole or streamed) are rewritten into Response objects and Responses
//! streaming events, in the shapes the official SDKs parse.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A request that cannot be expressed as a chat request; surfaced as a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    fn new(message: String, param: &str) -> Self {
        Self {
            message,
            param: Some(param.to_owned()),
        }
    }

    fn missing(param: &str) -> Self {
        Self::new(format!("Missing required parameter: '{param}'."), param)
    }

    fn invalid_type(param: &str, expected: &str) -> Self {
        Self::new(
            format!("Invalid type for '{param}': expected {expected}."),
            param,
        )
    }

    fn invalid_value(param: &str, value: &str, supported: &str) -> Self {
        Self::new(
            format!("Invalid value: '{value}'. Supported values are: {supported}."),
            param,
        )
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(param) => write!(f, "{} (param: {param})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TranslateError {}

// ---------------------------------------------------------------------------
// Request: Responses -> Chat Completions
// ---------------------------------------------------------------------------

pub fn responses_to_chat_request(
    req: &Value,
    history: &[Value],
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let mut messages = Vec::new();
    match req.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(_) => return Err(TranslateError::invalid_type("instructions", "a string")),
    }
    messages.extend(history.iter().cloned());
    messages.extend(input_messages(req.get("input"))?);

    let mut body = Map::new();
    body.insert("model".into(), Value::from(upstream_model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(max) = present(req, "max_output_tokens") {
        body.insert("max_completion_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "user"] {
        if let Some(value) = present(req, key) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(format) = response_format(req)? {
        body.insert("response_format".into(), format);
    }

    let tools = chat_tools(req.get("tools"))?;
    let tool_choice = present(req, "tool_choice")
        .map(chat_tool_choice)
        .transpose()?;
    // Chat rejects `tool_choice` and `parallel_tool_calls` unless tools are sent.
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = tool_choice {
            body.insert("tool_choice".into(), choice);
        }
        if let Some(parallel) = present(req, "parallel_tool_calls") {
            body.insert("parallel_tool_calls".into(), parallel.clone());
        }
    }

    if req.get("stream") == Some(&Value::Bool(true)) {
        body.insert("stream".into(), Value::Bool(true));
        // Without this the upstream never reports usage on a stream.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(body))
}

/// A field that is present and not null; clients often send explicit nulls.
fn present<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn input_messages(input: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let items = match input {
        None | Some(Value::Null) => return Err(TranslateError::missing("input")),
        Some(Value::String(text)) => return Ok(vec![json!({"role": "user", "content": text})]),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(TranslateError::invalid_type(
                "input",
                "a string or an array of input items",
            ));
        }
    };

    let mut messages: Vec<Value> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        if !item.is_object() {
            return Err(TranslateError::invalid_type(&path, "an object"));
        }
        match item.get("type") {
            None | Some(Value::Null) => messages.push(chat_message(item, &path)?),
            Some(Value::String(kind)) => match kind.as_str() {
                "message" => messages.push(chat_message(item, &path)?),
                "function_call" => push_tool_call(&mut messages, chat_tool_call(item, &path)?),
                "function_call_output" => messages.push(chat_tool_result(item, &path)?),
                other => {
                    return Err(TranslateError::invalid_value(
                        &format!("{path}.type"),
                        other,
                        "'message', 'function_call', and 'function_call_output'",
                    ));
                }
            },
            Some(_) => {
                return Err(TranslateError::invalid_type(
                    &format!("{path}.type"),
                    "a string",
                ));
            }
        }
    }
    Ok(messages)
}

fn chat_message(item: &Value, path: &str) -> Result<Value, TranslateError> {
    let role_path = format!("{path}.role");
    let role = match item.get("role") {
        None | Some(Value::Null) => return Err(TranslateError::missing(&role_path)),
        Some(Value::String(role)) => match role.as_str() {
            "user" | "assistant" | "system" => role.as_str(),
            // Many chat-only upstreams predate the `developer` role; `system` is
            // what it means to them.
            "developer" => "system",
            other => {
                return Err(TranslateError::invalid_value(
                    &role_path,
                    other,
                    "'user', 'assistant', 'system', and 'developer'",
                ));
            }
        },
        Some(_) => return Err(TranslateError::invalid_type(&role_path, "a string")),
    };
    let content = chat_content(item.get("content"), role, &format!("{path}.content"))?;
    Ok(json!({"role": role, "content": content}))
}

fn chat_content(content: Option<&Value>, role: &str, path: &str) -> Result<Value, TranslateError> {
    let parts = match content {
        None | Some(Value::Null) => return Err(TranslateError::missing(path)),
        Some(Value::String(text)) => return Ok(Value::from(text.as_str())),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(TranslateError::invalid_type(
                path,
                "a string or an array of content parts",
            ));
        }
    };

    let mut chat_parts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{j}]");
        let kind = part.get("type").and_then(Value::as_str);
        let chat_part = match kind {
            Some("input_text" | "output_text") => {
                let text = required_str(part, "text", &part_path)?;
                json!({"type": "text", "text": text})
            }
            // Lets clients replay a previous assistant output verbatim.
            Some("refusal") if role == "assistant" => {
                let refusal = required_str(part, "refusal", &part_path)?;
                json!({"type": "refusal", "refusal": refusal})
            }
            Some("input_image") if role == "user" => chat_image_part(part, &part_path)?,
            _ => {
                let supported = match role {
                    "user" => "'input_text', 'output_text', and 'input_image'",
                    "assistant" => "'output_text', 'input_text', and 'refusal'",
                    _ => "'input_text' and 'output_text'",
                };
                return Err(TranslateError::invalid_value(
                    &format!("{part_path}.type"),
                    kind.unwrap_or("<missing>"),
                    supported,
                ));
            }
        };
        chat_parts.push(chat_part);
    }

    // A lone text part is sent as a plain string, the form every chat upstream accepts.
    if let [only] = chat_parts.as_slice()
        && only.get("type").and_then(Value::as_str) == Some("text")
    {
        return Ok(only.get("text").cloned().unwrap_or_default());
    }
    if chat_parts.is_empty() {
        return Ok(Value::from(""));
    }
    Ok(Value::Array(chat_parts))
}

fn chat_image_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    // File ids live in OpenAI's file store, which a chat upstream cannot resolve.
    let url = match part.get("image_url") {
        Some(Value::String(url)) => url,
        _ => {
            return Err(TranslateError::new(
                format!(
                    "'{path}.image_url' is required: only image URLs and data URLs are supported."
                ),
                &format!("{path}.image_url"),
            ));
        }
    };
    let mut image = Map::new();
    image.insert("url".into(), Value::from(url.as_str()));
    if let Some(detail) = part.get("detail").and_then(Value::as_str) {
        image.insert("detail".into(), Value::from(detail));
    }
    Ok(json!({"type": "image_url", "image_url": image}))
}

fn required_str<'a>(obj: &'a Value, key: &str, path: &str) -> Result<&'a str, TranslateError> {
    let field_path = format!("{path}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Err(TranslateError::missing(&field_path)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(TranslateError::invalid_type(&field_path, "a string")),
    }
}

fn chat_tool_call(item: &Value, path: &str) -> Result<Value, TranslateError> {
    let call_id = required_str(item, "call_id", path)?;
    let name = required_str(item, "name", path)?;
    let arguments = required_str(item, "arguments", path)?;
    Ok(json!({
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }))
}

/// Chat carries tool calls on an assistant message, so consecutive
/// `function_call` items (and the assistant text just before them) share one.
fn push_tool_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(Value::Object(last)) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some("assistant")
    {
        match last.get_mut("tool_calls") {
            Some(Value::Array(calls)) => calls.push(call),
            _ => {
                last.insert("tool_calls".into(), Value::Array(vec![call]));
            }
        }
        return;
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

fn chat_tool_result(item: &Value, path: &str) -> Result<Value, TranslateError> {
    let call_id = required_str(item, "call_id", path)?;
    let output_path = format!("{path}.output");
    let output = match item.get("output") {
        None | Some(Value::Null) => return Err(TranslateError::missing(&output_path)),
        Some(Value::String(text)) => text.clone(),
        // Chat tool messages only carry text.
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{output_path}[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text") => {
                        text.push_str(required_str(part, "text", &part_path)?);
                    }
                    other => {
                        return Err(TranslateError::invalid_value(
                            &format!("{part_path}.type"),
                            other.unwrap_or("<missing>"),
                            "'input_text'",
                        ));
                    }
                }
            }
            text
        }
        Some(_) => {
            return Err(TranslateError::invalid_type(
                &output_path,
                "a string or an array of content parts",
            ));
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": output}))
}

fn response_format(req: &Value) -> Result<Option<Value>, TranslateError> {
    let Some(format) = req.get("text").and_then(|text| present(text, "format")) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let Some(schema) = present(format, "schema") else {
                return Err(TranslateError::missing("text.format.schema"));
            };
            let mut json_schema = Map::new();
            // Chat requires a name where Responses lets SDKs omit it.
            let name = present(format, "name")
                .cloned()
                .unwrap_or_else(|| "response".into());
            json_schema.insert("name".into(), name);
            json_schema.insert("schema".into(), schema.clone());
            for key in ["description", "strict"] {
                if let Some(value) = present(format, key) {
                    json_schema.insert(key.into(), value.clone());
                }
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": json_schema}),
            ))
        }
        other => Err(TranslateError::invalid_value(
            "text.format.type",
            other.unwrap_or("<missing>"),
            "'text', 'json_object', and 'json_schema'",
        )),
    }
}

fn chat_tools(tools: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(TranslateError::invalid_type("tools", "an array")),
    };
    let mut chat = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            // Hosted tools (web search, file search, ...) have no chat equivalent;
            // dropping them silently would change what the model can do.
            other => {
                return Err(TranslateError::invalid_value(
                    &format!("{path}.type"),
                    other.unwrap_or("<missing>"),
                    "'function' (hosted tools are not available on this upstream)",
                ));
            }
        }
        let name = required_str(tool, "name", &path)?;
        let mut function = Map::new();
        function.insert("name".into(), Value::from(name));
        for key in ["description", "parameters", "strict"] {
            if let Some(value) = present(tool, key) {
                function.insert(key.into(), value.clone());
            }
        }
        chat.push(json!({"type": "function", "function": function}));
    }
    Ok(chat)
}

fn chat_tool_choice(choice: &Value) -> Result<Value, TranslateError> {
    if let Some(mode @ ("auto" | "none" | "required")) = choice.as_str() {
        return Ok(Value::from(mode));
    }
    if choice.get("type").and_then(Value::as_str) == Some("function")
        && let Some(name) = choice.get("name").and_then(Value::as_str)
    {
        return Ok(json!({"type": "function", "function": {"name": name}}));
    }
    Err(TranslateError::new(
        "Invalid value for 'tool_choice': expected 'auto', 'none', 'required', or {\"type\": \"function\", \"name\": ...}.".into(),
        "tool_choice",
    ))
}

// ---------------------------------------------------------------------------
// Response objects
// ---------------------------------------------------------------------------

/// How a response ended, derived from the chat `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Incomplete(&'static str),
}

impl Outcome {
    fn from_finish_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Self::Incomplete("max_output_tokens"),
            Some("content_filter") => Self::Incomplete("content_filter"),
            _ => Self::Completed,
        }
    }

    fn item_status(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Incomplete(_) => "incomplete",
        }
    }
}

/// Lifecycle state written into a Response object.
enum Status<'a> {
    InProgress,
    Finished(Outcome),
    Failed { message: &'a str },
}

/// The request fields every Response object echoes back, computed once per request.
fn echo_fields(req: &Value) -> Map<String, Value> {
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
    fields.insert("tools".into(), echo("tools", json!([])));
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
    // Reasoning settings are not forwarded upstream, so none are reported.
    fields.insert("reasoning".into(), Value::Null);
    fields.insert("truncation".into(), Value::from("disabled"));
    fields
}

fn response_object(
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

fn responses_usage(chat_usage: Option<&Value>) -> Value {
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

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
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
fn chat_text(content: Option<&Value>) -> String {
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

    let mut output = Vec::new();
    let mut content = Vec::new();
    if !text.is_empty() {
        content.push(output_text_part(&text));
    }
    if let Some(refusal) = refusal {
        content.push(refusal_part(refusal));
    }
    // A pure tool-call turn has no message item, but every other reply has one,
    // even when empty, so clients always find the assistant message.
    if !content.is_empty() || tool_calls.is_empty() {
        if content.is_empty() {
            content.push(output_text_part(""));
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

// ---------------------------------------------------------------------------
// Streaming: chat chunks -> Responses events
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// `event: {event}\ndata: {compact json}\n\n`
pub fn sse_frame(ev: &SseEvent) -> Bytes {
    Bytes::from(format!("event: {}\ndata: {}\n\n", ev.event, ev.data))
}

/// Stamps events with their type and a stream-wide sequence number.
#[derive(Debug, Default)]
struct Sequencer {
    next: u64,
}

impl Sequencer {
    fn event(&mut self, name: &str, fields: Value) -> SseEvent {
        let mut data = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("type".into(), Value::from(name));
        data.insert("sequence_number".into(), Value::from(self.next));
        self.next += 1;
        SseEvent {
            event: name.to_owned(),
            data: Value::Object(data),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

#[derive(Debug)]
struct Part {
    kind: PartKind,
    text: String,
}

impl Part {
    fn to_json(&self) -> Value {
        match self.kind {
            PartKind::Text => output_text_part(&self.text),
            PartKind::Refusal => refusal_part(&self.text),
        }
    }
}

#[derive(Debug)]
enum ItemKind {
    Message {
        parts: Vec<Part>,
    },
    FunctionCall {
        chat_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug)]
struct StreamItem {
    id: String,
    status: &'static str,
    kind: ItemKind,
}

impl StreamItem {
    fn to_json(&self) -> Value {
        match &self.kind {
            ItemKind::Message { parts } => message_item(
                &self.id,
                self.status,
                parts.iter().map(Part::to_json).collect(),
            ),
            ItemKind::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => function_call_item(&self.id, call_id, name, arguments, self.status),
        }
    }
}

/// Turns a stream of chat completion chunks into Responses streaming events.
///
/// Items are emitted one at a time, as the Responses API does: an item is
/// closed (`*.done` events) when the next one starts or when the stream finishes.
#[derive(Debug)]
pub struct ResponsesStreamTranslator {
    echo: Map<String, Value>,
    response_id: String,
    created_at: i64,
    seq: Sequencer,
    items: Vec<StreamItem>,
    /// Index into `items` of the item still receiving deltas.
    open: Option<usize>,
    usage: Value,
    finish_reason: Option<String>,
    /// Message of the error that ended the stream.
    failure: Option<String>,
    final_response: Option<Value>,
}

impl ResponsesStreamTranslator {
    /// A chat chunk with a `finish_reason` has been translated: the answer is whole.
    pub fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    pub fn new(req: &Value, response_id: String, created_at: i64) -> Self {
        Self {
            echo: echo_fields(req),
            response_id,
            created_at,
            seq: Sequencer::default(),
            items: Vec::new(),
            open: None,
            usage: Value::Null,
            finish_reason: None,
            failure: None,
            final_response: None,
        }
    }

    fn ended(&self) -> bool {
        self.final_response.is_some() || self.failure.is_some()
    }

    pub fn start(&mut self) -> Vec<SseEvent> {
        if self.ended() {
            return Vec::new();
        }
        let snapshot = self.final_response();
        vec![
            self.seq
                .event("response.created", json!({"response": snapshot})),
            self.seq
                .event("response.in_progress", json!({"response": snapshot})),
        ]
    }

    pub fn on_chat_chunk(&mut self, chunk: &Value) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.ended() {
            return events;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage.clone();
        }
        // Only the first choice is served: a Response has a single output list.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        let Some(choice) = choice else {
            return events;
        };
        if let Some(delta) = choice.get("delta") {
            for (key, kind) in [("content", PartKind::Text), ("refusal", PartKind::Refusal)] {
                if let Some(text) = delta.get(key).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    self.push_content(kind, text, &mut events);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.push_tool_call(position, call, &mut events);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        events
    }

    pub fn on_error(&mut self, message: &str, code: &str) -> Vec<SseEvent> {
        if self.ended() {
            return Vec::new();
        }
        self.failure = Some(message.to_owned());
        vec![self.seq.event(
            "error",
            json!({"code": code, "message": message, "param": null}),
        )]
    }

    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.ended() {
            return events;
        }
        // Clients expect at least the assistant message, even for an empty reply.
        if self.items.is_empty() {
            self.open_message(PartKind::Text, &mut events);
        }
        let outcome = Outcome::from_finish_reason(self.finish_reason.as_deref());
        self.close_open(outcome.item_status(), &mut events);

        let response = response_object(
            &self.echo,
            &self.response_id,
            self.created_at,
            Status::Finished(outcome),
            self.items.iter().map(StreamItem::to_json).collect(),
            responses_usage(Some(&self.usage)),
        );
        let name = match outcome {
            Outcome::Completed => "response.completed",
            Outcome::Incomplete(_) => "response.incomplete",
        };
        events.push(self.seq.event(name, json!({"response": response})));
        self.final_response = Some(response);
        events
    }

    pub fn final_response(&self) -> Value {
        if let Some(response) = &self.final_response {
            return response.clone();
        }
        let status = match &self.failure {
            Some(message) => Status::Failed { message },
            None => Status::InProgress,
        };
        response_object(
            &self.echo,
            &self.response_id,
            self.created_at,
            status,
            self.items.iter().map(StreamItem::to_json).collect(),
            responses_usage(Some(&self.usage)),
        )
    }

    fn push_content(&mut self, kind: PartKind, delta: &str, events: &mut Vec<SseEvent>) {
        let open_message = self.open.filter(|&i| {
            matches!(
                self.items.get(i),
                Some(StreamItem {
                    kind: ItemKind::Message { .. },
                    ..
                })
            )
        });
        let index = match open_message {
            Some(index) => index,
            None => {
                self.close_open("completed", events);
                self.open_message(kind, events)
            }
        };
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        let ItemKind::Message { parts } = &mut item.kind else {
            return;
        };
        if parts.last().map(|p| p.kind) != Some(kind) {
            if let Some(previous) = parts.last() {
                events.extend(part_done_events(
                    &mut self.seq,
                    &item.id,
                    index,
                    parts.len() - 1,
                    previous,
                ));
            }
            parts.push(Part {
                kind,
                text: String::new(),
            });
            events.push(part_added_event(
                &mut self.seq,
                &item.id,
                index,
                parts.len() - 1,
                kind,
            ));
        }
        let content_index = parts.len() - 1;
        if let Some(part) = parts.last_mut() {
            part.text.push_str(delta);
        }
        let mut fields = json!({
            "item_id": item.id,
            "output_index": index,
            "content_index": content_index,
            "delta": delta,
        });
        let name = match kind {
            PartKind::Text => {
                fields["logprobs"] = json!([]);
                "response.output_text.delta"
            }
            PartKind::Refusal => "response.refusal.delta",
        };
        events.push(self.seq.event(name, fields));
    }

    /// Adds a new message item with one empty part of `kind`; returns its index.
    fn open_message(&mut self, kind: PartKind, events: &mut Vec<SseEvent>) -> usize {
        let id = new_id("msg");
        let index = self.items.len();
        // The item is announced empty; its first part follows in its own event.
        events.push(self.seq.event(
            "response.output_item.added",
            json!({"output_index": index, "item": message_item(&id, "in_progress", Vec::new())}),
        ));
        events.push(part_added_event(&mut self.seq, &id, index, 0, kind));
        self.items.push(StreamItem {
            id,
            status: "in_progress",
            kind: ItemKind::Message {
                parts: vec![Part {
                    kind,
                    text: String::new(),
                }],
            },
        });
        self.open = Some(index);
        index
    }

    fn push_tool_call(&mut self, position: usize, call: &Value, events: &mut Vec<SseEvent>) {
        // Chat identifies a streamed tool call by `index`; its id and name come
        // only on the first fragment.
        let chat_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();

        let existing = self.items.iter().position(|item| {
            matches!(item.kind, ItemKind::FunctionCall { chat_index: i, .. } if i == chat_index)
        });
        let index = match existing {
            Some(index) => index,
            None => {
                self.close_open("completed", events);
                let call_id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| new_id("call"), str::to_owned);
                let item = StreamItem {
                    id: new_id("fc"),
                    status: "in_progress",
                    kind: ItemKind::FunctionCall {
                        chat_index,
                        call_id,
                        name: name.to_owned(),
                        arguments: String::new(),
                    },
                };
                let index = self.items.len();
                events.push(self.seq.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item.to_json()}),
                ));
                self.items.push(item);
                self.open = Some(index);
                index
            }
        };

        let is_open = self.open == Some(index);
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        let ItemKind::FunctionCall {
            name: item_name,
            arguments: item_arguments,
            ..
        } = &mut item.kind
        else {
            return;
        };
        if item_name.is_empty() {
            item_name.push_str(name);
        }
        if arguments.is_empty() {
            return;
        }
        item_arguments.push_str(arguments);
        // Fragments for a call that was already closed (upstreams interleaving
        // parallel calls) still reach the final response, but cannot be streamed.
        if is_open {
            events.push(self.seq.event(
                "response.function_call_arguments.delta",
                json!({"item_id": item.id, "output_index": index, "delta": arguments}),
            ));
        }
    }

    fn close_open(&mut self, status: &'static str, events: &mut Vec<SseEvent>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        item.status = status;
        match &item.kind {
            ItemKind::Message { parts } => {
                if let Some(last) = parts.last() {
                    events.extend(part_done_events(
                        &mut self.seq,
                        &item.id,
                        index,
                        parts.len() - 1,
                        last,
                    ));
                }
            }
            ItemKind::FunctionCall {
                name, arguments, ..
            } => events.push(self.seq.event(
                "response.function_call_arguments.done",
                json!({
                    "item_id": item.id,
                    "output_index": index,
                    "name": name,
                    "arguments": arguments,
                }),
            )),
        }
        events.push(self.seq.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item.to_json()}),
        ));
    }
}

fn part_added_event(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    kind: PartKind,
) -> SseEvent {
    let empty = Part {
        kind,
        text: String::new(),
    };
    seq.event(
        "response.content_part.added",
        json!({
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "part": empty.to_json(),
        }),
    )
}

fn part_done_events(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    part: &Part,
) -> [SseEvent; 2] {
    let mut fields = json!({
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
    });
    let name = match part.kind {
        PartKind::Text => {
            fields["text"] = Value::from(part.text.as_str());
            fields["logprobs"] = json!([]);
            "response.output_text.done"
        }
        PartKind::Refusal => {
            fields["refusal"] = Value::from(part.text.as_str());
            "response.refusal.done"
        }
    };
    let text_done = seq.event(name, fields);
    let part_done = seq.event(
        "response.content_part.done",
        json!({
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "part": part.to_json(),
        }),
    );
    [text_done, part_done]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_param(result: Result<Value, TranslateError>) -> String {
        match result {
            Ok(body) => panic!("expected an error, got {body}"),
            Err(err) => err.param.unwrap_or_default(),
        }
    }

    fn translate(req: Value) -> Value {
        responses_to_chat_request(&req, &[], "up-model").expect("valid request")
    }

    // -- request translation ------------------------------------------------

    #[test]
    fn instructions_history_then_string_input() {
        let req = json!({"model": "client-model", "instructions": "be brief", "input": "hi"});
        let history = [
            json!({"role": "user", "content": "earlier"}),
            json!({"role": "assistant", "content": "reply"}),
        ];
        let chat = responses_to_chat_request(&req, &history, "up-model").unwrap();
        assert_eq!(
            chat,
            json!({
                "model": "up-model",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "earlier"},
                    {"role": "assistant", "content": "reply"},
                    {"role": "user", "content": "hi"},
                ],
            })
        );
    }

    #[test]
    fn message_items_and_parts() {
        let chat = translate(json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "dev rules"},
                {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "one"}]},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "prev", "annotations": []}]},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/img.png", "detail": "low"},
                    {"type": "output_text", "text": "again"},
                ]},
                {"role": "user", "content": []},
            ],
        }));
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "dev rules"},
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "prev"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/img.png", "detail": "low"}},
                    {"type": "text", "text": "again"},
                ]},
                {"role": "user", "content": ""},
            ])
        );
    }

    #[test]
    fn sampling_parameters_are_mapped_and_state_fields_dropped() {
        let chat = translate(json!({
            "model": "m",
            "input": "x",
            "max_output_tokens": 42,
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "u-1",
            "top_logprobs": null,
            "metadata": {"k": "v"},
            "store": true,
            "previous_response_id": "resp_1",
            "truncation": "auto",
        }));
        assert_eq!(chat["max_completion_tokens"], 42);
        assert_eq!(chat["temperature"], 0.5);
        assert_eq!(chat["top_p"], 0.9);
        assert_eq!(chat["user"], "u-1");
        for absent in [
            "max_output_tokens",
            "metadata",
            "store",
            "previous_response_id",
            "truncation",
            "stream",
            "stream_options",
            "response_format",
            "tools",
            "input",
        ] {
            assert!(chat.get(absent).is_none(), "{absent} must not be sent");
        }
    }

    #[test]
    fn explicit_nulls_are_not_forwarded() {
        let chat = translate(json!({
            "model": "m", "input": "x", "instructions": null, "temperature": null,
            "max_output_tokens": null, "tools": null, "text": null,
        }));
        assert_eq!(
            chat,
            json!({"model": "up-model", "messages": [{"role": "user", "content": "x"}]})
        );
    }

    #[test]
    fn text_format_becomes_response_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let chat = translate(json!({
            "model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "name": "thing", "schema": schema,
                                "strict": true, "description": "d"}},
        }));
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "thing", "schema": schema, "strict": true, "description": "d"}})
        );

        let chat = translate(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "json_schema", "schema": {}}}}));
        assert_eq!(chat["response_format"]["json_schema"]["name"], "response");

        let chat = translate(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "json_object"}}}));
        assert_eq!(chat["response_format"], json!({"type": "json_object"}));

        let chat = translate(json!({"model": "m", "input": "x",
            "text": {"format": {"type": "text"}, "verbosity": "low"}}));
        assert!(chat.get("response_format").is_none());

        let bad = responses_to_chat_request(
            &json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            &[],
            "m",
        );
        assert_eq!(err_param(bad), "text.format.type");
        let no_schema = responses_to_chat_request(
            &json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            &[],
            "m",
        );
        assert_eq!(err_param(no_schema), "text.format.schema");
    }

    #[test]
    fn function_tools_and_tool_choice() {
        let params = json!({"type": "object", "properties": {}});
        let chat = translate(json!({
            "model": "m", "input": "x",
            "tools": [
                {"type": "function", "name": "get_weather", "description": "w",
                 "parameters": params, "strict": true},
                {"type": "function", "name": "noop"},
            ],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
        }));
        assert_eq!(
            chat["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "w",
                                                  "parameters": params, "strict": true}},
                {"type": "function", "function": {"name": "noop"}},
            ])
        );
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(chat["parallel_tool_calls"], false);

        for mode in ["auto", "none", "required"] {
            let chat = translate(json!({"model": "m", "input": "x",
                "tools": [{"type": "function", "name": "f"}], "tool_choice": mode}));
            assert_eq!(chat["tool_choice"], mode);
        }
    }

    #[test]
    fn tool_settings_are_dropped_without_tools() {
        let chat = translate(json!({"model": "m", "input": "x", "tools": [],
            "tool_choice": "none", "parallel_tool_calls": true}));
        assert!(chat.get("tools").is_none());
        assert!(chat.get("tool_choice").is_none());
        assert!(chat.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn tool_errors_name_the_param() {
        let cases = [
            (
                json!({"tools": [{"type": "web_search_preview"}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "function", "name": "a"}, {"type": "function"}]}),
                "tools[1].name",
            ),
            (json!({"tools": {"type": "function"}}), "tools"),
            (
                json!({"tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "file_search"}}),
                "tool_choice",
            ),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
        ];
        for (extra, param) in cases {
            let mut req = json!({"model": "m", "input": "x"});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            assert_eq!(
                err_param(responses_to_chat_request(&req, &[], "m")),
                param,
                "{req}"
            );
        }
    }

    #[test]
    fn function_call_round_trip_items() {
        let chat = translate(json!({
            "model": "m",
            "input": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "w",
                 "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                {"type": "function_call", "call_id": "call_b", "name": "w", "arguments": "{\"city\":\"Rome\"}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
                {"type": "function_call_output", "call_id": "call_b",
                 "output": [{"type": "input_text", "text": "rain"}, {"type": "input_text", "text": "y"}]},
                {"type": "function_call", "call_id": "call_c", "name": "w", "arguments": "{}"},
            ],
        }));
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_b", "content": "rainy"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_c", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                ]},
            ])
        );
    }

    #[test]
    fn stream_flag_requests_usage() {
        let chat = translate(json!({"model": "m", "input": "x", "stream": true}));
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"], json!({"include_usage": true}));

        let chat = translate(json!({"model": "m", "input": "x", "stream": false}));
        assert!(chat.get("stream").is_none());
        assert!(chat.get("stream_options").is_none());
    }

    #[test]
    fn input_errors_name_the_param() {
        let cases = [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": null}), "input"),
            (json!({"model": "m", "input": 3}), "input"),
            (
                json!({"model": "m", "input": {"role": "user", "content": "x"}}),
                "input",
            ),
            (json!({"model": "m", "input": ["hi"]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
                "input[1].role",
            ),
            (
                json!({"model": "m", "input": [{"content": "a"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": 7, "content": "a"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user"}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": 5}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "user", "content": [{"type": "input_audio", "data": "..."}]},
                ]}),
                "input[2].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"text": "no type"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
                "input[0].content[0].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
                "input[0].content[0].text",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]}),
                "input[0].content[0].text",
            ),
            (
                json!({"model": "m", "input": [{"type": "reasoning", "summary": []}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": 1}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
                "input[0].output",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
                "output": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].output[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "instructions": ["a"]}),
                "instructions",
            ),
        ];
        for (req, param) in cases {
            let result = responses_to_chat_request(&req, &[], "m");
            assert_eq!(err_param(result), param, "{req}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let err = responses_to_chat_request(&json!({"model": "m"}), &[], "m").unwrap_err();
        assert_eq!(err.message, "Missing required parameter: 'input'.");
        let err = responses_to_chat_request(
            &json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            &[],
            "m",
        )
        .unwrap_err();
        assert!(err.message.contains("'robot'"), "{}", err.message);
        assert_eq!(
            err.to_string(),
            format!("{} (param: input[0].role)", err.message)
        );
    }

    // -- non-streaming replies ----------------------------------------------

    fn chat_reply(content: Value, finish_reason: &str) -> Value {
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                         "logprobs": null, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                      "prompt_tokens_details": {"cached_tokens": 3},
                      "completion_tokens_details": {"reasoning_tokens": 2}},
        })
    }

    fn assert_hex_id(id: &Value, prefix: &str) {
        let id = id.as_str().unwrap();
        let hex = id
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{id} lacks {prefix}"));
        assert_eq!(hex.len(), 32);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }

    #[test]
    fn completed_reply_with_default_echo_fields() {
        let req = json!({"model": "client-model", "input": "hi"});
        let resp = chat_to_responses_response(
            &chat_reply(json!("Hello there"), "stop"),
            &req,
            "resp_1",
            1700,
        );
        let message = &resp["output"][0];
        assert_hex_id(&message["id"], "msg_");
        assert_eq!(
            resp,
            json!({
                "id": "resp_1",
                "object": "response",
                "created_at": 1700,
                "status": "completed",
                "error": null,
                "incomplete_details": null,
                "model": "client-model",
                "output": [{
                    "type": "message", "id": message["id"], "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}],
                }],
                "usage": {
                    "input_tokens": 11, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                    "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2},
                    "total_tokens": 18,
                },
                "instructions": null,
                "metadata": {},
                "previous_response_id": null,
                "temperature": null,
                "top_p": null,
                "max_output_tokens": null,
                "tools": [],
                "tool_choice": "auto",
                "parallel_tool_calls": true,
                "text": {"format": {"type": "text"}},
                "store": true,
                "user": null,
                "reasoning": null,
                "truncation": "disabled",
            })
        );
        assert_eq!(assistant_text(&resp), "Hello there");
    }

    #[test]
    fn request_fields_are_echoed() {
        let tools = json!([{"type": "function", "name": "f", "parameters": {}}]);
        let req = json!({
            "model": "client-model", "input": "hi", "instructions": "be nice",
            "metadata": {"trace": "t1"}, "previous_response_id": "resp_0", "temperature": 0.2,
            "top_p": 0.8, "max_output_tokens": 100, "tools": tools, "tool_choice": "required",
            "parallel_tool_calls": false, "text": {"format": {"type": "json_object"}},
            "store": false, "user": "alice",
        });
        let resp = chat_to_responses_response(&chat_reply(json!("{}"), "stop"), &req, "resp_2", 5);
        assert_eq!(resp["instructions"], "be nice");
        assert_eq!(resp["metadata"], json!({"trace": "t1"}));
        assert_eq!(resp["previous_response_id"], "resp_0");
        assert_eq!(resp["temperature"], 0.2);
        assert_eq!(resp["top_p"], 0.8);
        assert_eq!(resp["max_output_tokens"], 100);
        assert_eq!(resp["tools"], tools);
        assert_eq!(resp["tool_choice"], "required");
        assert_eq!(resp["parallel_tool_calls"], false);
        assert_eq!(resp["text"], json!({"format": {"type": "json_object"}}));
        assert_eq!(resp["store"], false);
        assert_eq!(resp["user"], "alice");
    }

    #[test]
    fn length_and_content_filter_are_incomplete() {
        let req = json!({"model": "m", "input": "hi", "max_output_tokens": 2});
        let resp =
            chat_to_responses_response(&chat_reply(json!("reply 1"), "length"), &req, "r", 0);
        assert_eq!(resp["status"], "incomplete");
        assert_eq!(
            resp["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(resp["output"][0]["status"], "incomplete");
        assert_eq!(assistant_text(&resp), "reply 1");

        let resp =
            chat_to_responses_response(&chat_reply(json!(""), "content_filter"), &req, "r", 0);
        assert_eq!(resp["status"], "incomplete");
        assert_eq!(
            resp["incomplete_details"],
            json!({"reason": "content_filter"})
        );
    }

    #[test]
    fn tool_calls_become_function_call_items() {
        let chat = json!({
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":1}"}},
                    {"type": "function", "function": {"name": "v"}},
                ],
            }}],
        });
        let resp = chat_to_responses_response(&chat, &json!({"model": "m"}), "r", 0);
        let output = resp["output"].as_array().unwrap();
        assert_eq!(output.len(), 2, "no message item for a pure tool-call turn");
        assert_hex_id(&output[0]["id"], "fc_");
        assert_eq!(
            output[0],
            json!({"type": "function_call", "id": output[0]["id"], "call_id": "call_1",
                   "name": "w", "arguments": "{\"c\":1}", "status": "completed"})
        );
        assert_hex_id(&output[1]["call_id"], "call_");
        assert_eq!(output[1]["arguments"], "");
        assert_eq!(resp["usage"], Value::Null);
        assert_eq!(assistant_text(&resp), "");

        let mut with_text = chat.clone();
        with_text["choices"][0]["message"]["content"] = json!("let me check");
        let resp = chat_to_responses_response(&with_text, &json!({"model": "m"}), "r", 0);
        let types: Vec<_> = resp["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].clone())
            .collect();
        assert_eq!(
            types,
            [
                json!("message"),
                json!("function_call"),
                json!("function_call")
            ]
        );
    }

    #[test]
    fn refusal_and_part_content() {
        let mut chat = chat_reply(Value::Null, "stop");
        chat["choices"][0]["message"]["refusal"] = json!("I can't help with that.");
        let resp = chat_to_responses_response(&chat, &json!({"model": "m"}), "r", 0);
        assert_eq!(
            resp["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I can't help with that."}])
        );
        assert_eq!(assistant_text(&resp), "");

        let chat = chat_reply(
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            "stop",
        );
        let resp = chat_to_responses_response(&chat, &json!({"model": "m"}), "r", 0);
        assert_eq!(assistant_text(&resp), "ab");
    }

    #[test]
    fn usage_defaults_missing_details_and_total() {
        let mut chat = chat_reply(json!("x"), "stop");
        chat["usage"] = json!({"prompt_tokens": 4, "completion_tokens": 6});
        let resp = chat_to_responses_response(&chat, &json!({"model": "m"}), "r", 0);
        assert_eq!(
            resp["usage"],
            json!({"input_tokens": 4, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                   "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 10})
        );
    }

    #[test]
    fn malformed_chat_replies_do_not_panic() {
        let replies = [
            json!(null),
            json!("text"),
            json!({"choices": "x"}),
            json!({"choices": []}),
            json!({"choices": [null]}),
            json!({"choices": [{"message": 5, "finish_reason": 3}], "usage": "lots"}),
            json!({"choices": [{"message": {"tool_calls": [null, 1, {"function": 2}]}}]}),
            json!({"usage": {"prompt_tokens": -1, "completion_tokens": "2"}}),
        ];
        for chat in replies {
            let resp = chat_to_responses_response(&chat, &json!([1, 2]), "r", 0);
            assert_eq!(resp["object"], "response");
            assert!(resp["output"].is_array());
            assert!(!assistant_text(&resp).contains('\0'));
        }
        assert_eq!(
            assistant_text(&json!({"output": [{"type": "message", "content": "x"}]})),
            ""
        );
        assert_eq!(assistant_text(&json!(null)), "");
    }

    // -- streaming ----------------------------------------------------------

    fn chunk(delta: Value, finish_reason: Value) -> Value {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], "usage": null})
    }

    fn usage_chunk() -> Value {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": [],
               "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                         "prompt_tokens_details": {"cached_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0}}})
    }

    fn names(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.event.as_str()).collect()
    }

    fn assert_well_formed(events: &[SseEvent]) {
        for (i, ev) in events.iter().enumerate() {
            assert_eq!(ev.data["type"], ev.event.as_str());
            assert_eq!(ev.data["sequence_number"], i as u64, "{}", ev.event);
        }
    }

    /// Feeds a whole chat stream the way the proxy does and returns every event.
    fn run_stream(req: &Value, chunks: &[Value]) -> (Vec<SseEvent>, ResponsesStreamTranslator) {
        let mut tr = ResponsesStreamTranslator::new(req, "resp_s".into(), 99);
        let mut events = tr.start();
        for c in chunks {
            events.extend(tr.on_chat_chunk(c));
        }
        events.extend(tr.finish());
        (events, tr)
    }

    fn text_stream(words: &[&str], finish_reason: &str) -> Vec<Value> {
        let mut chunks = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        chunks.extend(
            words
                .iter()
                .map(|w| chunk(json!({"content": w}), Value::Null)),
        );
        chunks.push(chunk(json!({}), json!(finish_reason)));
        chunks.push(usage_chunk());
        chunks
    }

    #[test]
    fn text_stream_event_sequence() {
        let req =
            json!({"model": "client-model", "input": "hi", "stream": true, "metadata": {"a": "b"}});
        let (events, tr) = run_stream(&req, &text_stream(&["reply", " 1:", " hi"], "stop"));
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);

        let created = &events[0].data["response"];
        assert_eq!(created["status"], "in_progress");
        assert_eq!(created["output"], json!([]));
        assert_eq!(created["usage"], Value::Null);
        assert_eq!(created["id"], "resp_s");
        assert_eq!(created["created_at"], 99);
        assert_eq!(created["model"], "client-model");
        assert_eq!(created["metadata"], json!({"a": "b"}));
        assert_eq!(events[1].data["response"], *created);

        let added = &events[2].data;
        assert_eq!(added["output_index"], 0);
        let item_id = added["item"]["id"].clone();
        assert_hex_id(&item_id, "msg_");
        assert_eq!(
            added["item"],
            json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []})
        );
        assert_eq!(
            events[3].data,
            json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": item_id,
                   "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        );
        assert_eq!(
            events[4].data,
            json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": item_id,
                   "output_index": 0, "content_index": 0, "delta": "reply", "logprobs": []})
        );
        let streamed: String = events
            .iter()
            .filter(|e| e.event == "response.output_text.delta")
            .map(|e| e.data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(streamed, "reply 1: hi");
        assert_eq!(events[7].data["text"], "reply 1: hi");
        assert_eq!(events[7].data["logprobs"], json!([]));
        assert_eq!(events[8].data["part"]["text"], "reply 1: hi");
        assert_eq!(events[9].data["item"]["status"], "completed");
        assert_eq!(events[9].data["item"]["content"][0]["text"], "reply 1: hi");

        let completed = &events[10].data["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["usage"]["input_tokens"], 5);
        assert_eq!(completed["usage"]["output_tokens"], 3);
        assert_eq!(completed["usage"]["total_tokens"], 8);
        assert_eq!(completed["output"], json!([events[9].data["item"]]));
        assert_eq!(assistant_text(completed), "reply 1: hi");
        assert_eq!(tr.final_response(), *completed);
    }

    #[test]
    fn length_limited_stream_ends_incomplete() {
        let (events, tr) = run_stream(&json!({"model": "m"}), &text_stream(&["a", " b"], "length"));
        assert_eq!(names(&events).last(), Some(&"response.incomplete"));
        assert_well_formed(&events);
        let response = &events.last().unwrap().data["response"];
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(response["output"][0]["status"], "incomplete");
        assert_eq!(tr.final_response(), *response);
    }

    #[test]
    fn stream_without_content_still_has_a_message() {
        let chunks = [
            chunk(json!({"role": "assistant"}), Value::Null),
            chunk(json!({"content": ""}), Value::Null),
            chunk(json!({"content": null}), Value::Null),
            chunk(json!({}), json!("stop")),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);
        assert_eq!(events[4].data["text"], "");
        assert_eq!(tr.final_response()["usage"], Value::Null);
        assert_eq!(assistant_text(&tr.final_response()), "");
    }

    #[test]
    fn role_empty_and_usage_chunks_emit_nothing() {
        let mut tr = ResponsesStreamTranslator::new(&json!({"model": "m"}), "r".into(), 0);
        tr.start();
        assert!(
            tr.on_chat_chunk(&chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null
            ))
            .is_empty()
        );
        assert!(tr.on_chat_chunk(&chunk(json!({}), Value::Null)).is_empty());
        assert!(
            tr.on_chat_chunk(&chunk(json!({}), json!("stop")))
                .is_empty()
        );
        assert!(tr.on_chat_chunk(&usage_chunk()).is_empty());
        let events = tr.finish();
        assert_eq!(
            events.last().unwrap().data["response"]["usage"]["total_tokens"],
            8
        );
    }

    #[test]
    fn final_response_before_finish_is_in_progress() {
        let mut tr = ResponsesStreamTranslator::new(&json!({"model": "m"}), "r".into(), 0);
        tr.start();
        tr.on_chat_chunk(&chunk(json!({"content": "partial"}), Value::Null));
        let snapshot = tr.final_response();
        assert_eq!(snapshot["status"], "in_progress");
        assert_eq!(snapshot["output"][0]["status"], "in_progress");
        assert_eq!(assistant_text(&snapshot), "partial");
    }

    #[test]
    fn error_ends_the_stream() {
        let mut tr = ResponsesStreamTranslator::new(&json!({"model": "m"}), "r".into(), 0);
        let mut events = tr.start();
        events.extend(tr.on_chat_chunk(&chunk(json!({"content": "one"}), Value::Null)));
        events.extend(tr.on_chat_chunk(&chunk(json!({"content": " two"}), Value::Null)));
        let error = tr.on_error("upstream went away", "stream_error");
        assert_eq!(error.len(), 1);
        assert_eq!(
            error[0].data,
            json!({"type": "error", "code": "stream_error", "message": "upstream went away",
                   "param": null, "sequence_number": 6})
        );
        events.extend(error);
        assert_well_formed(&events);

        assert!(
            tr.on_chat_chunk(&chunk(json!({"content": "late"}), Value::Null))
                .is_empty()
        );
        assert!(tr.finish().is_empty());
        assert!(tr.on_error("again", "x").is_empty());
        let snapshot = tr.final_response();
        assert_eq!(snapshot["status"], "failed");
        assert_eq!(
            snapshot["error"],
            json!({"code": "server_error", "message": "upstream went away"})
        );
        assert_eq!(assistant_text(&snapshot), "one two");
    }

    #[test]
    fn finish_is_idempotent() {
        let (_, mut tr) = run_stream(&json!({"model": "m"}), &text_stream(&["x"], "stop"));
        assert!(tr.finish().is_empty());
        assert!(tr.on_error("late", "x").is_empty());
        assert!(tr.start().is_empty());
        assert_eq!(tr.final_response()["status"], "completed");
    }

    fn tool_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
        let mut function = json!({"arguments": args});
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        let mut call = json!({"index": index, "function": function});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        chunk(json!({"tool_calls": [call]}), Value::Null)
    }

    #[test]
    fn streamed_tool_calls_follow_text() {
        let chunks = [
            chunk(json!({"role": "assistant", "content": null}), Value::Null),
            chunk(json!({"content": "Checking."}), Value::Null),
            tool_delta(0, Some("call_a"), Some("weather"), ""),
            tool_delta(0, None, None, "{\"city\":"),
            tool_delta(0, None, None, "\"Paris\"}"),
            tool_delta(1, Some("call_b"), Some("time"), "{}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);

        let fc_added = &events[8].data;
        assert_eq!(fc_added["output_index"], 1);
        let fc_id = fc_added["item"]["id"].clone();
        assert_hex_id(&fc_id, "fc_");
        assert_eq!(
            fc_added["item"],
            json!({"type": "function_call", "id": fc_id, "call_id": "call_a", "name": "weather",
                   "arguments": "", "status": "in_progress"})
        );
        assert_eq!(
            events[9].data,
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 9,
                   "item_id": fc_id, "output_index": 1, "delta": "{\"city\":"})
        );
        assert_eq!(events[11].data["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(events[11].data["name"], "weather");
        assert_eq!(events[12].data["item"]["status"], "completed");
        assert_eq!(events[13].data["output_index"], 2);

        let completed = tr.final_response();
        let output = completed["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(output[2]["call_id"], "call_b");
        assert_eq!(output[2]["name"], "time");
        assert_eq!(output[2]["arguments"], "{}");
        assert_eq!(assistant_text(&completed), "Checking.");
    }

    #[test]
    fn tool_only_stream_has_no_message_item() {
        let chunks = [
            tool_delta(0, Some("call_a"), Some("f"), "{}"),
            chunk(json!({}), json!("tool_calls")),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events)[2..],
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[2].data["output_index"], 0);
        assert_eq!(
            tr.final_response()["output"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn streamed_refusal_gets_its_own_part() {
        let chunks = [
            chunk(json!({"refusal": "No"}), Value::Null),
            chunk(json!({"refusal": "pe."}), Value::Null),
            chunk(json!({}), json!("stop")),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events)[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);
        assert_eq!(
            events[3].data["part"],
            json!({"type": "refusal", "refusal": ""})
        );
        assert_eq!(events[6].data["refusal"], "Nope.");
        assert_eq!(
            tr.final_response()["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "Nope."}])
        );
    }

    #[test]
    fn text_after_a_tool_call_opens_a_new_message() {
        let chunks = [
            tool_delta(0, Some("call_a"), Some("f"), "{\"a\":"),
            chunk(json!({"content": "meanwhile"}), Value::Null),
            // A late fragment for the closed call still reaches the final response.
            tool_delta(0, None, None, "1}"),
            chunk(json!({"content": " more"}), Value::Null),
            chunk(json!({}), json!("stop")),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events)[2..],
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);
        assert_eq!(events[6].data["output_index"], 1);
        assert_eq!(events[8].data["output_index"], 1);
        let completed = tr.final_response();
        assert_eq!(completed["output"][0]["arguments"], "{\"a\":1}");
        assert_eq!(assistant_text(&completed), "meanwhile more");
    }

    #[test]
    fn switching_between_text_and_refusal_closes_the_part() {
        let chunks = [
            chunk(json!({"content": "Sure"}), Value::Null),
            chunk(json!({"refusal": "but no"}), Value::Null),
            chunk(json!({}), json!("stop")),
        ];
        let (events, tr) = run_stream(&json!({"model": "m"}), &chunks);
        assert_eq!(
            names(&events)[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_well_formed(&events);
        assert_eq!(events[7].data["content_index"], 1);
        assert_eq!(events[8].data["content_index"], 1);
        assert_eq!(
            tr.final_response()["output"][0]["content"],
            json!([
                {"type": "output_text", "text": "Sure", "annotations": [], "logprobs": []},
                {"type": "refusal", "refusal": "but no"},
            ])
        );
    }

    #[test]
    fn cache_write_tokens_are_reported() {
        let mut chat = chat_reply(json!("x"), "stop");
        chat["usage"]["prompt_tokens_details"]["cache_write_tokens"] = json!(9);
        let resp = chat_to_responses_response(&chat, &json!({"model": "m"}), "r", 0);
        assert_eq!(
            resp["usage"]["input_tokens_details"],
            json!({"cached_tokens": 3, "cache_write_tokens": 9})
        );
    }

    #[test]
    fn malformed_chunks_do_not_panic() {
        let junk = [
            json!(null),
            json!(1),
            json!({"choices": null}),
            json!({"choices": [1, null]}),
            json!({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
            json!({"choices": [{"delta": "x", "finish_reason": 5}]}),
            json!({"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [null, 3, {"function": null}]}}]}),
            json!({"usage": 3}),
        ];
        let mut tr = ResponsesStreamTranslator::new(&json!(null), "r".into(), 0);
        let mut events = tr.start();
        for c in &junk {
            events.extend(tr.on_chat_chunk(c));
        }
        events.extend(tr.finish());
        assert_well_formed(&events);
        assert_eq!(assistant_text(&tr.final_response()), "");
        assert_eq!(tr.final_response()["model"], "");
    }

    #[test]
    fn sse_frame_format() {
        let ev = SseEvent {
            event: "response.output_text.delta".into(),
            data: json!({"type": "response.output_text.delta", "delta": "a\nb"}),
        };
        assert_eq!(
            &sse_frame(&ev)[..],
            b"event: response.output_text.delta\ndata: {\"delta\":\"a\\nb\",\"type\":\"response.output_text.delta\"}\n\n"
        );
    }
}
