//! The translation tests.

use serde_json::{Value, json};

use crate::wire::sse::SseEvent;
use crate::wire::translate::request::{TranslateError, responses_to_chat_request};
use crate::wire::translate::response::{assistant_text, chat_to_responses_response};
use crate::wire::translate::stream::ResponsesStreamTranslator;

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
    let resp = chat_to_responses_response(&chat_reply(json!("reply 1"), "length"), &req, "r", 0);
    assert_eq!(resp["status"], "incomplete");
    assert_eq!(
        resp["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(resp["output"][0]["status"], "incomplete");
    assert_eq!(assistant_text(&resp), "reply 1");

    let resp = chat_to_responses_response(&chat_reply(json!(""), "content_filter"), &req, "r", 0);
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
