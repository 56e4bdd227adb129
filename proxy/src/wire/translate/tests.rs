//! The translation tests, as data: every case is JSON (the input, and what is
//! expected of the output or the error), run by one runner per kind:
//! request (`tests/requests.rs`), response (`tests/responses.rs`) and stream
//! (`tests/streams.rs`). Each case is a `#[test]` of its own.
//!
//! Expectations are `{pointer: expected}` maps over the output (`""` is the
//! whole of it). An expected value matches like `assert_eq!`, except for these
//! strings: `"<absent>"` (nothing at the pointer), `"<array>"` (any array),
//! `"<hex:PREFIX>"` (PREFIX and 32 hex digits, a generated id) and
//! `"<same:POINTER>"` (equal to the output's value at POINTER). In a stream
//! case's pointers, `/last` is the last event.

use serde_json::{Value, json};

use crate::wire::sse::SseEvent;
use crate::wire::translate::request::responses_to_chat_request;
use crate::wire::translate::response::{assistant_text, chat_to_responses_response};
use crate::wire::translate::stream::ResponsesStreamTranslator;

mod requests;
mod responses;
mod streams;

/// Checks `expected` against `actual`; `root` is what `<same:...>` points into.
fn matches(expected: &Value, actual: &Value, root: &Value, at: &str) -> Result<(), String> {
    if let Some(marker) = expected.as_str().and_then(|text| text.strip_prefix('<')) {
        let marker = marker.strip_suffix('>').unwrap_or(marker);
        if marker == "array" {
            return actual
                .is_array()
                .then_some(())
                .ok_or_else(|| format!("{at}: {actual} is not an array"));
        }
        if let Some(prefix) = marker.strip_prefix("hex:") {
            let hex = actual
                .as_str()
                .and_then(|id| id.strip_prefix(prefix))
                .ok_or_else(|| format!("{at}: {actual} lacks {prefix}"))?;
            if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Ok(());
            }
            return Err(format!("{at}: {actual} is not {prefix} and 32 hex digits"));
        }
        if let Some(pointer) = marker.strip_prefix("same:") {
            let other = root
                .pointer(pointer)
                .ok_or_else(|| format!("{at}: nothing at {pointer}"))?;
            return (actual == other)
                .then_some(())
                .ok_or_else(|| format!("{at}: {actual} != {pointer} ({other})"));
        }
    }
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            let mut want_keys: Vec<_> = want.keys().collect();
            let mut got_keys: Vec<_> = got.keys().collect();
            want_keys.sort();
            got_keys.sort();
            if want_keys != got_keys {
                return Err(format!("{at}: keys {got_keys:?}, expected {want_keys:?}"));
            }
            for (key, value) in want {
                matches(value, &got[key], root, &format!("{at}/{key}"))?;
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return Err(format!("{at}: {actual} has not {} items", want.len()));
            }
            for (index, (value, item)) in want.iter().zip(got).enumerate() {
                matches(value, item, root, &format!("{at}/{index}"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: {actual}, expected {expected}")),
    }
}

/// Applies a case's `{pointer: expected}` map to `doc`.
fn check(name: &str, what: &str, expectations: Option<&Value>, doc: &Value) {
    let Some(expectations) = expectations else {
        return;
    };
    let last = doc
        .as_array()
        .map_or(0, |items| items.len().saturating_sub(1));
    for (pointer, expected) in expectations
        .as_object()
        .expect("expectations are an object")
    {
        let pointer = match pointer.strip_prefix("/last") {
            Some(rest) => format!("/{last}{rest}"),
            None => pointer.clone(),
        };
        let actual = doc.pointer(&pointer);
        if expected == "<absent>" {
            assert!(
                actual.is_none(),
                "{name}: {what}{pointer} must be absent: {doc}"
            );
            continue;
        }
        let actual = actual.unwrap_or_else(|| panic!("{name}: nothing at {what}{pointer}: {doc}"));
        if let Err(problem) = matches(expected, actual, doc, &format!("{what}{pointer}")) {
            panic!("{name}: {problem}");
        }
    }
}

fn text_of(case: &Value, field: &str) -> Option<String> {
    case.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// A request case: `request` (and `history`, and `items`: the stored items
/// by id that item references resolve to) in, then either `expect` on the
/// chat request, or `error` (`param`, `message`, `missing_item`,
/// `message_contains`, `display_suffix`) on the refusal.
fn run_request_case(name: &str, case: Value) {
    let history = case
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let items = case.get("items").cloned().unwrap_or_else(|| json!({}));
    let lookup = |id: &str| items.get(id).cloned();
    let result = responses_to_chat_request(&case["request"], &history, &lookup, "up-model");
    match (result, case.get("error")) {
        (Ok(chat), None) => check(name, "chat", case.get("expect"), &chat),
        (Err(err), Some(expected)) => {
            let refusal = json!({"message": err.message, "param": err.param,
                                 "missing_item": err.missing_item});
            let mut exact = expected.clone();
            let exact = exact.as_object_mut().expect("error is an object");
            let contains = exact.remove("message_contains");
            let suffix = exact.remove("display_suffix");
            for (field, value) in exact.iter() {
                assert_eq!(&refusal[field], value, "{name}: error {field}");
            }
            if let Some(part) = contains.as_ref().and_then(Value::as_str) {
                assert!(err.message.contains(part), "{name}: {}", err.message);
            }
            if let Some(suffix) = suffix.as_ref().and_then(Value::as_str) {
                assert_eq!(
                    err.to_string(),
                    format!("{}{suffix}", err.message),
                    "{name}"
                );
            }
        }
        (Ok(chat), Some(_)) => panic!("{name}: expected an error, got {chat}"),
        (Err(err), None) => panic!("{name}: {err}"),
    }
}

/// A response case: `chat` and `request` in (`id`, `created_at`), then
/// `expect` on the Response, `text` (its assistant text) and `text_excludes`.
fn run_response_case(name: &str, case: Value) {
    let id = text_of(&case, "id").unwrap_or_else(|| "r".to_owned());
    let created_at = case["created_at"].as_i64().unwrap_or(0);
    let response = chat_to_responses_response(&case["chat"], &case["request"], &id, created_at);
    check(name, "response", case.get("expect"), &response);
    let text = assistant_text(&response);
    if let Some(expected) = text_of(&case, "text") {
        assert_eq!(text, expected, "{name}: assistant text");
    }
    if let Some(excluded) = text_of(&case, "text_excludes") {
        assert!(!text.contains(&excluded), "{name}: {text:?}");
    }
}

/// An assistant-text case: the text of an arbitrary `response` value.
fn run_assistant_text_case(name: &str, case: Value) {
    assert_eq!(
        assistant_text(&case["response"]),
        case["text"].as_str().unwrap(),
        "{name}"
    );
}

/// A stream case: the `steps` (`start`, `chunk`, `finish`, `error`, each
/// with an optional `emits` count) run through one translator, then `names`
/// (from index `names_from`), `events` on the events (`[{event, data}]`),
/// `deltas` (the text deltas joined), `final` on the final response,
/// `final_is` (the event pointer it equals) and `text`. Every stream must be
/// well formed: each event's data names its type and numbers it in order.
fn run_stream_case(name: &str, case: Value) {
    let mut translator = ResponsesStreamTranslator::new(&case["request"], "resp_s".into(), 99);
    let mut events: Vec<SseEvent> = Vec::new();
    for (index, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
        let emitted = if step.get("start").is_some() {
            translator.start()
        } else if let Some(chunk) = step.get("chunk") {
            translator.on_chat_chunk(chunk)
        } else if step.get("finish").is_some() {
            translator.finish()
        } else if let Some(error) = step.get("error") {
            translator.on_error(error[0].as_str().unwrap(), error[1].as_str().unwrap())
        } else {
            panic!("{name}: unknown step {step}");
        };
        if let Some(count) = step.get("emits") {
            assert_eq!(
                Some(emitted.len() as u64),
                count.as_u64(),
                "{name}: step {index} ({step}) emitted {emitted:?}"
            );
        }
        events.extend(emitted);
    }
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.data["type"], event.event.as_str(), "{name}");
        assert_eq!(
            event.data["sequence_number"], index as u64,
            "{name}: {}",
            event.event
        );
    }
    let doc = Value::Array(
        events
            .iter()
            .map(|event| json!({"event": event.event, "data": event.data}))
            .collect(),
    );
    if let Some(names) = case.get("names") {
        let from = case["names_from"].as_u64().unwrap_or(0) as usize;
        let actual: Vec<&str> = events[from..].iter().map(|e| e.event.as_str()).collect();
        let expected: Vec<&str> = names
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(actual, expected, "{name}: event names");
    }
    check(name, "events", case.get("events"), &doc);
    if let Some(expected) = text_of(&case, "deltas") {
        let streamed: String = events
            .iter()
            .filter(|e| e.event == "response.output_text.delta")
            .map(|e| e.data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(streamed, expected, "{name}: deltas");
    }
    let final_response = translator.final_response();
    check(name, "final", case.get("final"), &final_response);
    if let Some(pointer) = text_of(&case, "final_is") {
        let pointer = match pointer.strip_prefix("/last") {
            Some(rest) => format!("/{}{rest}", events.len().saturating_sub(1)),
            None => pointer,
        };
        assert_eq!(
            Some(&final_response),
            doc.pointer(&pointer),
            "{name}: final_is"
        );
    }
    if let Some(expected) = text_of(&case, "text") {
        assert_eq!(assistant_text(&final_response), expected, "{name}: text");
    }
}

#[test]
fn the_matcher_knows_its_markers() {
    let root = json!({"a": "msg_0123456789abcdef0123456789abcdef", "b": [1]});
    assert!(matches(&json!("<hex:msg_>"), &root["a"], &root, "").is_ok());
    assert!(matches(&json!("<hex:fc_>"), &root["a"], &root, "").is_err());
    assert!(matches(&json!("<array>"), &root["b"], &root, "").is_ok());
    assert!(matches(&json!("<same:/b>"), &json!([1]), &root, "").is_ok());
    assert!(matches(&json!({"x": 1}), &json!({"x": 1, "y": 2}), &root, "").is_err());
    assert!(matches(&json!([1, 2]), &json!([1]), &root, "").is_err());
}
