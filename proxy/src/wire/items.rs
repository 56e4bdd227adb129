//! Stored responses on the wire: a request's `input` as `input_items.list`
//! gives it back, a page of such a list, and the id of a response found in
//! an answer's bytes (whole JSON or its event stream).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::sse::SseParser;

/// Each input item with an `id` (the API's prefix for its type when it had
/// none), and a message's text content as content parts.
pub fn input_items(input: Option<&Value>) -> Vec<Value> {
    let items = match input {
        Some(Value::String(text)) => vec![json!({"role": "user", "content": text})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    items.into_iter().map(listed_item).collect()
}

fn listed_item(item: Value) -> Value {
    let Value::Object(mut item) = item else {
        return item;
    };
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_owned();
    if kind == "message" {
        let assistant = item.get("role").and_then(Value::as_str) == Some("assistant");
        if let Some(Value::String(text)) = item.get("content") {
            let part = if assistant {
                json!({"type": "output_text", "text": text, "annotations": []})
            } else {
                json!({"type": "input_text", "text": text})
            };
            item.insert("content".into(), json!([part]));
        }
        item.entry("status").or_insert_with(|| "completed".into());
    }
    let prefix = match kind.as_str() {
        "message" => "msg_",
        "function_call" => "fc_",
        "function_call_output" => "fco_",
        _ => "item_",
    };
    item.insert("type".into(), kind.into());
    item.entry("id")
        .or_insert_with(|| format!("{prefix}{}", uuid::Uuid::new_v4().simple()).into());
    Value::Object(item)
}

pub const DEFAULT_PAGE_LIMIT: usize = 20;
pub const MAX_PAGE_LIMIT: usize = 100;

/// How `input_items.list` pages: newest first unless `asc`, after or before
/// an item id.
pub struct PageQuery {
    pub ascending: bool,
    pub limit: usize,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// A query parameter that is not acceptable: its name and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BadQuery {
    pub param: &'static str,
    pub message: String,
}

impl PageQuery {
    /// `include` is accepted and changes nothing: the proxy's stored input
    /// items have no optional parts to add.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, BadQuery> {
        let mut query = PageQuery {
            ascending: false,
            limit: DEFAULT_PAGE_LIMIT,
            after: None,
            before: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "order" => {
                    query.ascending = match value.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(BadQuery {
                                param: "order",
                                message: format!(
                                    "Invalid value for 'order': expected 'asc' or 'desc', got '{value}'."
                                ),
                            });
                        }
                    }
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_PAGE_LIMIT).contains(limit))
                        .ok_or_else(|| BadQuery {
                            param: "limit",
                            message: format!(
                                "Invalid 'limit': expected an integer from 1 to {MAX_PAGE_LIMIT}."
                            ),
                        })?
                }
                "after" => query.after = Some(value.clone()),
                "before" => query.before = Some(value.clone()),
                "include" | "include[]" => {}
                _ => {
                    return Err(BadQuery {
                        param: "query",
                        message: format!("Unknown query parameter: '{name}'."),
                    });
                }
            }
        }
        Ok(query)
    }
}

/// One page of `items` (kept in the order sent) as the API's list object.
pub fn page(items: &[Value], query: &PageQuery) -> Value {
    let mut ordered: Vec<&Value> = items.iter().collect();
    if !query.ascending {
        ordered.reverse();
    }
    let position = |id: &str| {
        ordered
            .iter()
            .position(|item| item.get("id").and_then(Value::as_str) == Some(id))
    };
    let mut start = 0;
    let mut end = ordered.len();
    if let Some(after) = &query.after {
        start = position(after).map_or(end, |at| at + 1);
    }
    if let Some(before) = &query.before {
        end = position(before).unwrap_or(0).max(start);
    }
    let window = &ordered[start.min(end)..end];
    let shown = &window[..window.len().min(query.limit)];
    let id_of = |item: Option<&&Value>| item.and_then(|item| item.get("id")).cloned();
    json!({
        "object": "list",
        "data": shown,
        "first_id": id_of(shown.first()).unwrap_or(Value::Null),
        "last_id": id_of(shown.last()).unwrap_or(Value::Null),
        "has_more": window.len() > shown.len(),
    })
}

/// The id of the response an answer carries: the `id` of a whole response,
/// or of the `response` in a stream's first event that has one. Read on every
/// cache hit of a Response, so only the id is built (not the whole JSON),
/// and a stream is read only until its id (the first event, as a rule).
pub fn response_id_in(body: &[u8], stream: bool) -> Option<String> {
    #[derive(Deserialize)]
    struct WithId {
        id: String,
    }
    #[derive(Deserialize)]
    struct Event {
        response: WithId,
    }
    if !stream {
        return serde_json::from_slice::<WithId>(body)
            .ok()
            .map(|whole| whole.id);
    }
    let mut parser = SseParser::default();
    body.chunks(STREAM_READ_STEP).find_map(|chunk| {
        parser.push(chunk).iter().find_map(|message| {
            serde_json::from_str::<Event>(&message.data)
                .ok()
                .map(|event| event.response.id)
        })
    })
}

const STREAM_READ_STEP: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Value) -> Vec<&str> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect()
    }

    fn items(count: usize) -> Vec<Value> {
        (0..count).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn query(ascending: bool, limit: usize, after: Option<&str>) -> PageQuery {
        PageQuery {
            ascending,
            limit,
            after: after.map(str::to_owned),
            before: None,
        }
    }

    #[test]
    fn a_string_input_is_one_user_message_with_an_input_text_part() {
        let listed = input_items(Some(&json!("hello")));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["type"], "message");
        assert_eq!(listed[0]["role"], "user");
        assert_eq!(listed[0]["status"], "completed");
        assert_eq!(
            listed[0]["content"],
            json!([{"type": "input_text", "text": "hello"}])
        );
        assert!(listed[0]["id"].as_str().unwrap().starts_with("msg_"));
    }

    #[test]
    fn items_keep_their_ids_and_get_the_prefix_of_their_type() {
        let input = json!([
            {"role": "assistant", "content": "earlier"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": "fc_given"},
            {"type": "function_call_output", "call_id": "c", "output": "1"},
        ]);
        let listed = input_items(Some(&input));
        assert_eq!(
            listed[0]["content"],
            json!([{"type": "output_text", "text": "earlier", "annotations": []}])
        );
        assert_eq!(listed[1]["id"], "fc_given");
        assert!(listed[2]["id"].as_str().unwrap().starts_with("fco_"));
        assert!(
            listed[2].get("status").is_none(),
            "only messages get a status"
        );
    }

    #[test]
    fn pages_follow_the_order_and_the_after_cursor() {
        let all = items(5);
        let first = page(&all, &query(false, 2, None));
        assert_eq!(ids(&first), ["i4", "i3"]);
        assert_eq!(
            (first["first_id"].as_str(), first["last_id"].as_str()),
            (Some("i4"), Some("i3"))
        );
        assert_eq!(first["has_more"], true);
        let last = page(&all, &query(false, 2, Some("i1")));
        assert_eq!(ids(&last), ["i0"]);
        assert_eq!(last["has_more"], false);
        assert_eq!(ids(&page(&all, &query(true, 20, Some("i2")))), ["i3", "i4"]);
        let before = PageQuery {
            before: Some("i3".into()),
            ..query(true, 20, Some("i0"))
        };
        assert_eq!(ids(&page(&all, &before)), ["i1", "i2"]);
    }

    #[test]
    fn an_unknown_cursor_is_an_empty_page() {
        let empty = page(&items(3), &query(true, 20, Some("nope")));
        assert_eq!(ids(&empty), Vec::<&str>::new());
        assert_eq!(empty["first_id"], Value::Null);
        assert_eq!(empty["has_more"], false);
    }

    #[test]
    fn bad_limits_and_orders_name_their_parameter() {
        let pairs = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
        for (name, value) in [
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "x"),
            ("order", "up"),
        ] {
            let error = PageQuery::parse(&pairs(name, value)).err().unwrap();
            assert_eq!(error.param, name, "{name}={value}");
        }
        assert_eq!(PageQuery::parse(&pairs("limit", "100")).unwrap().limit, 100);
        assert!(PageQuery::parse(&pairs("include", "x")).is_ok());
        assert_eq!(
            PageQuery::parse(&pairs("cursor", "x")).err().unwrap().param,
            "query"
        );
    }

    #[test]
    fn the_response_id_is_read_from_a_whole_answer_or_a_stream() {
        assert_eq!(
            response_id_in(br#"{"id": "resp_1", "object": "response"}"#, false).as_deref(),
            Some("resp_1")
        );
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\"}}\n\n";
        assert_eq!(response_id_in(stream, true).as_deref(), Some("resp_2"));
        // An event longer than one read step is put together across steps.
        let padding = "x".repeat(3 * STREAM_READ_STEP);
        let long = format!(
            "data: {{\"type\":\"response.created\",\"pad\":\"{padding}\",\"response\":{{\"id\":\"resp_3\"}}}}\n\n"
        );
        assert_eq!(
            response_id_in(long.as_bytes(), true).as_deref(),
            Some("resp_3")
        );
        assert_eq!(response_id_in(b"not json", false), None);
        assert_eq!(response_id_in(b"data: [DONE]\n\n", true), None);
    }
}
