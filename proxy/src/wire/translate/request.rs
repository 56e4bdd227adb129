//! Request translation: a Responses request becomes a Chat Completions
//! request (instructions, history and input as messages; tools, formats and
//! sampling parameters in their chat shapes).

use std::fmt;

use serde_json::{Map, Value, json};

/// A request that cannot be expressed as a chat request; surfaced as a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
    /// The id of an `item_reference` the proxy has no item for (a 404).
    pub missing_item: Option<String>,
}

impl TranslateError {
    fn new(message: String, param: &str) -> Self {
        Self {
            message,
            param: Some(param.to_owned()),
            missing_item: None,
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

impl TranslateError {
    fn item_not_found(id: &str) -> Self {
        Self {
            message: format!("Item with id '{id}' not found."),
            param: Some("input".to_owned()),
            missing_item: Some(id.to_owned()),
        }
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

/// Finds an output item the proxy produced earlier, by its id.
pub type ItemLookup<'a> = dyn Fn(&str) -> Option<Value> + 'a;

/// What becomes of a Responses request field on a chat-only upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRule {
    /// Sent upstream as it is, under the same name (chat has the same field).
    Copied,
    /// Sent upstream in its chat shape (under this chat name, or as messages).
    Mapped(&'static str),
    /// Means nothing to a chat upstream, and nothing is lost: the reason.
    NotApplicable(&'static str),
    /// Cannot be honoured on a chat upstream: a 400 naming the field, with
    /// this reason (only when the value asks for something).
    Refused(&'static str),
}

/// Every field of a Responses request, and what translation does with it
/// (docs/contracts.md has the same table; a test holds them equal). A field
/// that is not here is refused as an unknown parameter, as the API does, so
/// nothing a client asks for is dropped in silence.
pub const RESPONSES_FIELDS: &[(&str, FieldRule)] = &[
    (
        "model",
        FieldRule::Mapped("model (the upstream's model name)"),
    ),
    ("input", FieldRule::Mapped("messages")),
    ("instructions", FieldRule::Mapped("a system message first")),
    (
        "previous_response_id",
        FieldRule::Mapped("the stored conversation, as messages"),
    ),
    (
        "max_output_tokens",
        FieldRule::Mapped("max_completion_tokens"),
    ),
    ("temperature", FieldRule::Copied),
    ("top_p", FieldRule::Copied),
    ("user", FieldRule::Copied),
    (
        "metadata",
        FieldRule::NotApplicable("echoed on the Response; chat takes it only with store"),
    ),
    ("service_tier", FieldRule::Copied),
    ("prompt_cache_key", FieldRule::Copied),
    ("prompt_cache_retention", FieldRule::Copied),
    ("safety_identifier", FieldRule::Copied),
    (
        "reasoning",
        FieldRule::Mapped("reasoning_effort (reasoning.effort; a summary is refused)"),
    ),
    (
        "text",
        FieldRule::Mapped("response_format (text.format) and verbosity (text.verbosity)"),
    ),
    ("tools", FieldRule::Mapped("tools (function tools)")),
    ("tool_choice", FieldRule::Mapped("tool_choice")),
    (
        "parallel_tool_calls",
        FieldRule::Mapped("parallel_tool_calls"),
    ),
    (
        "stream",
        FieldRule::Mapped("stream, with stream_options.include_usage"),
    ),
    (
        "store",
        FieldRule::NotApplicable("the proxy keeps the conversation itself; false keeps nothing"),
    ),
    (
        "stream_options",
        FieldRule::NotApplicable("include_obfuscation: the proxy writes the events itself"),
    ),
    (
        "max_tool_calls",
        FieldRule::NotApplicable("counts built-in tools, which chat has none of"),
    ),
    (
        "truncation",
        FieldRule::Refused(
            "\"auto\" truncation: a chat upstream does not truncate the conversation",
        ),
    ),
    (
        "include",
        FieldRule::Mapped(
            "logprobs: true for message.output_text.logprobs; the other values are refused (table below)",
        ),
    ),
    (
        "top_logprobs",
        FieldRule::Mapped(
            "top_logprobs, beside the included logprobs (without them the API returns none)",
        ),
    ),
    (
        "conversation",
        FieldRule::Refused("conversations live in the Responses API; use previous_response_id"),
    ),
    (
        "prompt",
        FieldRule::Refused("prompt templates live in the Responses API; send input instead"),
    ),
    (
        "background",
        FieldRule::Refused("a chat upstream answers while the request is open"),
    ),
];

/// The include value that asks for the logprobs of the answer's text.
pub const OUTPUT_TEXT_LOGPROBS: &str = "message.output_text.logprobs";

/// The most `top_logprobs` either API takes.
const MAX_TOP_LOGPROBS: u64 = 20;

/// Every value `include` may hold, and what translation does with it
/// (docs/contracts.md has the same table; a test holds them equal). A
/// value that is not here is invalid, as the API answers.
pub const INCLUDE_VALUES: &[(&str, FieldRule)] = &[
    (
        OUTPUT_TEXT_LOGPROBS,
        FieldRule::Mapped(
            "logprobs: true; they come back on output_text parts and their text events",
        ),
    ),
    (
        "reasoning.encrypted_content",
        FieldRule::Refused(
            "a chat upstream sends its reasoning as plain text, which the reasoning item carries",
        ),
    ),
    (
        "message.input_image.image_url",
        FieldRule::Refused("the proxy keeps no input items to show"),
    ),
    (
        "file_search_call.results",
        FieldRule::Refused("a built-in tool, which a chat upstream has none of"),
    ),
    (
        "web_search_call.results",
        FieldRule::Refused("a built-in tool, which a chat upstream has none of"),
    ),
    (
        "web_search_call.action.sources",
        FieldRule::Refused("a built-in tool, which a chat upstream has none of"),
    ),
    (
        "computer_call_output.output.image_url",
        FieldRule::Refused("a built-in tool, which a chat upstream has none of"),
    ),
    (
        "code_interpreter_call.outputs",
        FieldRule::Refused("a built-in tool, which a chat upstream has none of"),
    ),
];

/// The rule for a field, if it is a Responses request field.
pub fn field_rule(name: &str) -> Option<FieldRule> {
    RESPONSES_FIELDS
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, rule)| *rule)
}

/// Whether a refused field's value asks for what cannot be done: a default
/// value (`background: false`, `truncation: "disabled"`) asks for nothing,
/// and is accepted.
fn asks_for_something(field: &str, value: &Value) -> bool {
    match (field, value) {
        (_, Value::Null) => false,
        ("background", Value::Bool(false)) => false,
        ("truncation", Value::String(mode)) => mode != "disabled",
        _ => true,
    }
}

/// The include values of a request, each known and none refused; whether
/// they ask for the text's logprobs.
fn included_logprobs(req: &Value) -> Result<bool, TranslateError> {
    let values = match req.get("include") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Array(values)) => values,
        Some(_) => return Err(TranslateError::invalid_type("include", "an array")),
    };
    let mut logprobs = false;
    for (i, value) in values.iter().enumerate() {
        let path = format!("include[{i}]");
        let Some(value) = value.as_str() else {
            return Err(TranslateError::invalid_type(&path, "a string"));
        };
        match INCLUDE_VALUES.iter().find(|(known, _)| *known == value) {
            None => {
                let supported: Vec<String> = INCLUDE_VALUES
                    .iter()
                    .map(|(known, _)| format!("'{known}'"))
                    .collect();
                return Err(TranslateError::invalid_value(
                    &path,
                    value,
                    &supported.join(", "),
                ));
            }
            Some((_, FieldRule::Refused(reason))) => {
                return Err(TranslateError::new(
                    format!(
                        "'include' value '{value}' is not supported on this model's chat-only upstream: {reason}."
                    ),
                    "include",
                ));
            }
            Some(_) => logprobs |= value == OUTPUT_TEXT_LOGPROBS,
        }
    }
    Ok(logprobs)
}

/// `top_logprobs`, an integer from 0 to 20 as in both APIs.
fn top_logprobs(req: &Value) -> Result<Option<u64>, TranslateError> {
    let Some(value) = present(req, "top_logprobs") else {
        return Ok(None);
    };
    let field = "top_logprobs";
    match (value.as_u64(), value.as_i64()) {
        (Some(n), _) if n <= MAX_TOP_LOGPROBS => Ok(Some(n)),
        (Some(n), _) => Err(TranslateError::new(
            format!(
                "Invalid '{field}': integer above maximum value. Expected a value <= {MAX_TOP_LOGPROBS}, but got {n} instead."
            ),
            field,
        )),
        (None, Some(n)) => Err(TranslateError::new(
            format!(
                "Invalid '{field}': integer below minimum value. Expected a value >= 0, but got {n} instead."
            ),
            field,
        )),
        (None, None) => Err(TranslateError::invalid_type(field, "an integer")),
    }
}

/// Whether a Responses request asks for the logprobs of its text.
pub(crate) fn wants_logprobs(req: &Value) -> bool {
    req.get("include")
        .and_then(Value::as_array)
        .is_some_and(|values| values.iter().any(|v| v == OUTPUT_TEXT_LOGPROBS))
}

/// Every field is known, and none that is refused asks for something.
fn check_fields(req: &Value) -> Result<(), TranslateError> {
    let Some(fields) = req.as_object() else {
        return Ok(());
    };
    for (name, value) in fields {
        match field_rule(name) {
            None => {
                return Err(TranslateError::new(
                    format!("Unknown parameter: '{name}'."),
                    name,
                ));
            }
            Some(FieldRule::Refused(reason)) if asks_for_something(name, value) => {
                return Err(TranslateError::new(
                    format!(
                        "'{name}' is not supported on this model's chat-only upstream: {reason}."
                    ),
                    name,
                ));
            }
            _ => {}
        }
    }
    if present(req, "reasoning")
        .and_then(|r| present(r, "summary"))
        .is_some()
    {
        return Err(TranslateError::new(
            "'reasoning.summary' is not supported on this model's chat-only upstream: a chat upstream returns no reasoning summary.".to_owned(),
            "reasoning.summary",
        ));
    }
    Ok(())
}

pub fn responses_to_chat_request(
    req: &Value,
    history: &[Value],
    items: &ItemLookup<'_>,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    check_fields(req)?;
    let mut messages = Vec::new();
    match req.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(_) => return Err(TranslateError::invalid_type("instructions", "a string")),
    }
    messages.extend(history.iter().cloned());
    messages.extend(input_messages(req.get("input"), items)?);

    let mut body = Map::new();
    body.insert("model".into(), Value::from(upstream_model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(max) = present(req, "max_output_tokens") {
        body.insert("max_completion_tokens".into(), max.clone());
    }
    for (key, rule) in RESPONSES_FIELDS {
        if *rule == FieldRule::Copied
            && let Some(value) = present(req, key)
        {
            body.insert((*key).into(), value.clone());
        }
    }
    if let Some(effort) = present(req, "reasoning").and_then(|r| present(r, "effort")) {
        body.insert("reasoning_effort".into(), effort.clone());
    }
    // Without the include the API returns no logprobs, whatever `top_logprobs` says.
    let top = top_logprobs(req)?;
    if included_logprobs(req)? {
        body.insert("logprobs".into(), Value::Bool(true));
        if let Some(top) = top {
            body.insert("top_logprobs".into(), Value::from(top));
        }
    }
    if let Some(format) = response_format(req)? {
        body.insert("response_format".into(), format);
    }
    if let Some(verbosity) = present(req, "text").and_then(|text| present(text, "verbosity")) {
        body.insert("verbosity".into(), verbosity.clone());
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
pub(crate) fn present<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn input_messages(
    input: Option<&Value>,
    items: &ItemLookup<'_>,
) -> Result<Vec<Value>, TranslateError> {
    let items_in = match input {
        None | Some(Value::Null) => return Err(TranslateError::missing("input")),
        Some(Value::String(text)) => return Ok(vec![json!({"role": "user", "content": text})]),
        Some(Value::Array(items_in)) => items_in,
        Some(_) => {
            return Err(TranslateError::invalid_type(
                "input",
                "a string or an array of input items",
            ));
        }
    };

    let mut messages: Vec<Value> = Vec::with_capacity(items_in.len());
    for (i, item) in items_in.iter().enumerate() {
        let path = format!("input[{i}]");
        if !item.is_object() {
            return Err(TranslateError::invalid_type(&path, "an object"));
        }
        if is_item_reference(item) {
            let id = required_str(item, "id", &path)?;
            let stored = items(id).ok_or_else(|| TranslateError::item_not_found(id))?;
            push_item(&mut messages, &stored, &path)?;
        } else {
            push_item(&mut messages, item, &path)?;
        }
    }
    Ok(messages)
}

/// The chat messages a list of Response output items stands for: the
/// assistant turn they make up, as the next request would send it.
pub fn output_messages(output: &[Value]) -> Result<Vec<Value>, TranslateError> {
    let mut messages = Vec::new();
    for (i, item) in output.iter().enumerate() {
        push_item(&mut messages, item, &format!("output[{i}]"))?;
    }
    Ok(messages)
}

/// `{"type": "item_reference", "id"}`; the type may be left out, and an item
/// with an id but no role (nor type) can only be a reference.
fn is_item_reference(item: &Value) -> bool {
    match item.get("type") {
        Some(Value::String(kind)) => kind == "item_reference",
        None | Some(Value::Null) => item.get("role").is_none() && item.get("id").is_some(),
        Some(_) => false,
    }
}

fn push_item(messages: &mut Vec<Value>, item: &Value, path: &str) -> Result<(), TranslateError> {
    match item.get("type") {
        None | Some(Value::Null) => push_message(messages, chat_message(item, path)?),
        Some(Value::String(kind)) => match kind.as_str() {
            "message" => push_message(messages, chat_message(item, path)?),
            "function_call" => push_tool_call(messages, chat_tool_call(item, path)?),
            "function_call_output" => messages.push(chat_tool_result(item, path)?),
            // The model's own reasoning of an earlier turn: chat takes no reasoning
            // back (a chat upstream's reasoning is an answer's, never a message's).
            "reasoning" => {}
            other => {
                return Err(TranslateError::invalid_value(
                    &format!("{path}.type"),
                    other,
                    "'message', 'function_call', 'function_call_output', 'reasoning', and 'item_reference'",
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
    Ok(())
}

/// An assistant message right after the assistant message with its turn's
/// tool calls belongs to that turn (text a stream produced after a call):
/// chat only accepts tool results right after the message with the calls.
fn push_message(messages: &mut Vec<Value>, message: Value) {
    let Value::Object(mut message) = message else {
        return;
    };
    if message.get("role").and_then(Value::as_str) == Some("assistant")
        && let Some(Value::Object(last)) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some("assistant")
        && last.contains_key("tool_calls")
    {
        if let Some(content) = message.remove("content") {
            let joined = join_content(last.remove("content"), content);
            last.insert("content".into(), joined);
        }
        if let Some(Value::String(refusal)) = message.remove("refusal") {
            let joined = match last.get("refusal").and_then(Value::as_str) {
                Some(earlier) => format!("{earlier}{refusal}"),
                None => refusal,
            };
            last.insert("refusal".into(), Value::from(joined));
        }
        return;
    }
    messages.push(Value::Object(message));
}

/// Two chat message contents as one (null, a string or text parts).
fn join_content(first: Option<Value>, second: Value) -> Value {
    let parts = |content: Option<Value>| match content {
        Some(Value::String(text)) if !text.is_empty() => {
            vec![json!({"type": "text", "text": text})]
        }
        Some(Value::Array(parts)) => parts,
        _ => Vec::new(),
    };
    let mut joined = parts(first);
    joined.extend(parts(Some(second)));
    match joined.as_slice() {
        [] => Value::Null,
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
            only.get("text").cloned().unwrap_or_default()
        }
        _ => Value::Array(joined),
    }
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
    let (content, refusal) = chat_content(item.get("content"), role, &format!("{path}.content"))?;
    // An assistant message as chat answers carry it: its refusal apart from
    // its text, and no text at all when it only refused.
    match refusal {
        Some(refusal) => Ok(json!({"role": role, "content": content, "refusal": refusal})),
        None => Ok(json!({"role": role, "content": content})),
    }
}

/// The chat content of a message, and (assistant messages only) the text of
/// its refusal parts, which chat carries in the message's `refusal`.
fn chat_content(
    content: Option<&Value>,
    role: &str,
    path: &str,
) -> Result<(Value, Option<String>), TranslateError> {
    let parts = match content {
        None | Some(Value::Null) => return Err(TranslateError::missing(path)),
        Some(Value::String(text)) => return Ok((Value::from(text.as_str()), None)),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(TranslateError::invalid_type(
                path,
                "a string or an array of content parts",
            ));
        }
    };

    let mut chat_parts = Vec::with_capacity(parts.len());
    let mut refusal: Option<String> = None;
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
                let text = required_str(part, "refusal", &part_path)?;
                refusal.get_or_insert_with(String::new).push_str(text);
                continue;
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
    let content = match chat_parts.as_slice() {
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
            only.get("text").cloned().unwrap_or_default()
        }
        [] if refusal.is_some() => Value::Null,
        [] => Value::from(""),
        _ => Value::Array(chat_parts),
    };
    Ok((content, refusal))
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
        for key in ["description", "parameters"] {
            if let Some(value) = present(tool, key) {
                function.insert(key.into(), value.clone());
            }
        }
        function.insert("strict".into(), Value::Bool(effective_strict(tool)));
        chat.push(json!({"type": "function", "function": function}));
    }
    Ok(chat)
}

/// A Responses function tool is strict unless it says `strict: false`; a
/// chat one is strict only when it says so, so the value is always sent.
pub(crate) fn effective_strict(tool: &Value) -> bool {
    present(tool, "strict")
        .and_then(Value::as_bool)
        .unwrap_or(true)
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
