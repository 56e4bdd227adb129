//! Stream cases: chat completion chunks in, Responses streaming events out.

use serde_json::{Value, json};

use super::run_stream_case;

macro_rules! stream_cases {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_stream_case(stringify!($name), $case);
            }
        )*
    };
}

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

/// A content chunk whose token came with its logprob and one alternative.
fn logprob_chunk(token: &str, logprob: f64) -> Value {
    let mut chunk = chunk(json!({"content": token}), Value::Null);
    chunk["choices"][0]["logprobs"] = json!({"content": [
        {"token": token, "logprob": logprob, "bytes": token.as_bytes(), "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": token.as_bytes()},
            {"token": "~", "logprob": logprob - 1.0, "bytes": [126]},
        ]},
    ], "refusal": null});
    chunk
}

/// A delta of reasoning under `field` (vLLM-style servers).
fn reasoning_chunk(field: &str, text: &str) -> Value {
    chunk(json!({ field: text }), Value::Null)
}

fn reasoning_usage_chunk() -> Value {
    let mut usage = usage_chunk();
    usage["usage"]["completion_tokens_details"]["reasoning_tokens"] = json!(2);
    usage
}

const LOGPROBS: &str = "message.output_text.logprobs";

/// A role chunk, one chunk per word, the finish chunk and the usage chunk.
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

/// The steps of a whole stream as the proxy runs it: start, every chunk, finish.
fn whole(chunks: Vec<Value>) -> Value {
    let mut steps = vec![json!({"start": null})];
    steps.extend(chunks.into_iter().map(|chunk| json!({"chunk": chunk})));
    steps.push(json!({"finish": null}));
    Value::Array(steps)
}

/// Steps that must emit nothing.
fn silent(chunks: Vec<Value>) -> Vec<Value> {
    chunks
        .into_iter()
        .map(|chunk| json!({"chunk": chunk, "emits": 0}))
        .collect()
}

fn text_stream_event_sequence_case() -> Value {
    json!({
        "request": {"model": "client-model", "input": "hi", "stream": true, "metadata": {"a": "b"}},
        "steps": whole(text_stream(&["reply", " 1:", " hi"], "stop")),
        "names": [
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
        ],
        "events": {
            "/0/data/response/status": "in_progress",
            "/0/data/response/output": [],
            "/0/data/response/usage": null,
            "/0/data/response/id": "resp_s",
            "/0/data/response/created_at": 99,
            "/0/data/response/model": "client-model",
            "/0/data/response/metadata": {"a": "b"},
            "/1/data/response": "<same:/0/data/response>",
            "/2/data/output_index": 0,
            "/2/data/item": {"type": "message", "id": "<hex:msg_>", "status": "in_progress",
                             "role": "assistant", "content": []},
            "/3/data": {"type": "response.content_part.added", "sequence_number": 3,
                        "item_id": "<same:/2/data/item/id>", "output_index": 0, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
            "/4/data": {"type": "response.output_text.delta", "sequence_number": 4,
                        "item_id": "<same:/2/data/item/id>", "output_index": 0, "content_index": 0,
                        "delta": "reply", "logprobs": []},
            "/7/data/text": "reply 1: hi",
            "/7/data/logprobs": [],
            "/8/data/part/text": "reply 1: hi",
            "/9/data/item/status": "completed",
            "/9/data/item/content/0/text": "reply 1: hi",
            "/10/data/response/status": "completed",
            "/10/data/response/usage/input_tokens": 5,
            "/10/data/response/usage/output_tokens": 3,
            "/10/data/response/usage/total_tokens": 8,
            "/10/data/response/output/0": "<same:/9/data/item>",
            "/10/data/response/output/1": "<absent>",
        },
        "deltas": "reply 1: hi",
        "final_is": "/10/data/response",
        "text": "reply 1: hi",
    })
}

fn error_ends_the_stream_case() -> Value {
    let mut steps = vec![
        json!({"start": null}),
        json!({"chunk": chunk(json!({"content": "one"}), Value::Null)}),
        json!({"chunk": chunk(json!({"content": " two"}), Value::Null)}),
        json!({"error": ["upstream went away", "stream_error"], "emits": 5}),
    ];
    steps.extend(silent(vec![chunk(json!({"content": "late"}), Value::Null)]));
    steps.push(json!({"finish": null, "emits": 0}));
    steps.push(json!({"error": ["again", "x"], "emits": 0}));
    json!({
        "request": {"model": "m"},
        "steps": steps,
        "names_from": 6,
        "names": ["response.output_text.done", "response.content_part.done",
                  "response.output_item.done", "error", "response.failed"],
        "events": {
            "/6/data/text": "one two",
            "/8/data/item/status": "incomplete",
            "/9/data": {"type": "error", "code": "stream_error", "message": "upstream went away",
                        "param": null, "sequence_number": 9},
            "/10/data/response/status": "failed",
            "/10/data/response/output/0/status": "incomplete",
            "/11": "<absent>",
        },
        "final": {
            "/status": "failed",
            "/error": {"code": "server_error", "message": "upstream went away"},
        },
        "final_is": "/10/data/response",
        "text": "one two",
    })
}

fn finish_is_idempotent_case() -> Value {
    let mut steps = whole(text_stream(&["x"], "stop"))
        .as_array()
        .unwrap()
        .clone();
    steps.push(json!({"finish": null, "emits": 0}));
    steps.push(json!({"error": ["late", "x"], "emits": 0}));
    steps.push(json!({"start": null, "emits": 0}));
    json!({"request": {"model": "m"}, "steps": steps, "final": {"/status": "completed"}})
}

fn role_empty_and_usage_chunks_emit_nothing_case() -> Value {
    let mut steps = vec![json!({"start": null})];
    steps.extend(silent(vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({}), Value::Null),
        chunk(json!({}), json!("stop")),
        usage_chunk(),
    ]));
    steps.push(json!({"finish": null}));
    json!({
        "request": {"model": "m"},
        "steps": steps,
        "events": {"/last/data/response/usage/total_tokens": 8},
    })
}

stream_cases! {
    text_stream_event_sequence: text_stream_event_sequence_case();

    length_limited_stream_ends_incomplete: json!({
        "request": {"model": "m"},
        "steps": whole(text_stream(&["a", " b"], "length")),
        "events": {
            "/last/event": "response.incomplete",
            "/last/data/response/status": "incomplete",
            "/last/data/response/incomplete_details": {"reason": "max_output_tokens"},
            "/last/data/response/output/0/status": "incomplete",
        },
        "final_is": "/last/data/response",
    });

    stream_without_content_still_has_a_message: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"role": "assistant"}), Value::Null),
            chunk(json!({"content": ""}), Value::Null),
            chunk(json!({"content": null}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "names": [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {"/4/data/text": ""},
        "final": {"/usage": null},
        "text": "",
    });

    role_empty_and_usage_chunks_emit_nothing: role_empty_and_usage_chunks_emit_nothing_case();

    final_response_before_finish_is_in_progress: json!({
        "request": {"model": "m"},
        "steps": [
            {"start": null},
            {"chunk": chunk(json!({"content": "partial"}), Value::Null)},
        ],
        "final": {"/status": "in_progress", "/output/0/status": "in_progress"},
        "text": "partial",
    });

    error_ends_the_stream: error_ends_the_stream_case();

    finish_is_idempotent: finish_is_idempotent_case();

    streamed_tool_calls_follow_text: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"role": "assistant", "content": null}), Value::Null),
            chunk(json!({"content": "Checking."}), Value::Null),
            tool_delta(0, Some("call_a"), Some("weather"), ""),
            tool_delta(0, None, None, "{\"city\":"),
            tool_delta(0, None, None, "\"Paris\"}"),
            tool_delta(1, Some("call_b"), Some("time"), "{}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(),
        ]),
        "names": [
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
        ],
        "events": {
            "/8/data/output_index": 1,
            "/8/data/item": {"type": "function_call", "id": "<hex:fc_>", "call_id": "call_a",
                             "name": "weather", "arguments": "", "status": "in_progress"},
            "/9/data": {"type": "response.function_call_arguments.delta", "sequence_number": 9,
                        "item_id": "<same:/8/data/item/id>", "output_index": 1, "delta": "{\"city\":"},
            "/11/data/arguments": "{\"city\":\"Paris\"}",
            "/11/data/name": "weather",
            "/12/data/item/status": "completed",
            "/13/data/output_index": 2,
        },
        "final": {
            "/output/1/arguments": "{\"city\":\"Paris\"}",
            "/output/2/call_id": "call_b",
            "/output/2/name": "time",
            "/output/2/arguments": "{}",
            "/output/3": "<absent>",
        },
        "text": "Checking.",
    });

    tool_only_stream_has_no_message_item: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("f"), "{}"),
            chunk(json!({}), json!("tool_calls")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {"/2/data/output_index": 0},
        "final": {"/output/0/type": "function_call", "/output/1": "<absent>"},
    });

    streamed_refusal_gets_its_own_part: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"refusal": "No"}), Value::Null),
            chunk(json!({"refusal": "pe."}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/3/data/part": {"type": "refusal", "refusal": ""},
            "/6/data/refusal": "Nope.",
        },
        "final": {"/output/0/content": [{"type": "refusal", "refusal": "Nope."}]},
    });

    // Text after a call waits until the call can be closed (the end of the
    // stream): a late fragment for the call still reaches its done events.
    text_after_a_tool_call_opens_a_new_message: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("f"), "{\"a\":"),
            chunk(json!({"content": "meanwhile"}), Value::Null),
            tool_delta(0, None, None, "1}"),
            chunk(json!({"content": " more"}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/5/data/arguments": "{\"a\":1}",
            "/6/data/item": "<same:/13/data/response/output/0>",
            "/7/data/output_index": 1,
            "/9/data/delta": "meanwhile more",
            "/12/data/item": "<same:/13/data/response/output/1>",
        },
        "final": {"/output/0/arguments": "{\"a\":1}"},
        "final_is": "/last/data/response",
        "text": "meanwhile more",
    });

    // Upstreams may interleave the fragments of parallel calls; each call's
    // done events still carry all of its arguments, as the final response does.
    interleaved_parallel_tool_calls_are_whole_in_their_done_events: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("weather"), ""),
            tool_delta(1, Some("call_b"), Some("time"), ""),
            tool_delta(0, None, None, "{\"city\":"),
            tool_delta(1, None, None, "{\"tz\":"),
            tool_delta(0, None, None, "\"Paris\"}"),
            tool_delta(1, None, None, "\"CET\"}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(),
        ]),
        "names": [
            "response.created",
            "response.in_progress",
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
        ],
        "events": {
            "/2/data/item/call_id": "call_a",
            "/3/data/delta": "{\"city\":",
            "/4/data/delta": "\"Paris\"}",
            "/5/data/arguments": "{\"city\":\"Paris\"}",
            "/5/data/item_id": "<same:/2/data/item/id>",
            "/6/data/item": "<same:/11/data/response/output/0>",
            "/7/data/output_index": 1,
            "/7/data/item/call_id": "call_b",
            "/7/data/item/name": "time",
            "/8/data/delta": "{\"tz\":\"CET\"}",
            "/8/data/output_index": 1,
            "/9/data/arguments": "{\"tz\":\"CET\"}",
            "/9/data/name": "time",
            "/9/data/output_index": 1,
            "/10/data/item": "<same:/11/data/response/output/1>",
            "/11/data/response/output/1/arguments": "{\"tz\":\"CET\"}",
            "/11/data/response/output/2": "<absent>",
        },
        "final_is": "/last/data/response",
    });

    text_before_interleaved_parallel_tool_calls: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"role": "assistant", "content": "Checking."}), Value::Null),
            tool_delta(0, Some("call_a"), Some("weather"), "{\"c\":"),
            tool_delta(1, Some("call_b"), Some("time"), "{"),
            tool_delta(0, None, None, "1}"),
            tool_delta(1, None, None, "}"),
            chunk(json!({}), json!("tool_calls")),
        ]),
        "names_from": 2,
        "names": [
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
        ],
        "events": {
            "/7/data/item": "<same:/17/data/response/output/0>",
            "/8/data/output_index": 1,
            "/11/data/arguments": "{\"c\":1}",
            "/12/data/item": "<same:/17/data/response/output/1>",
            "/13/data/output_index": 2,
            "/15/data/arguments": "{}",
            "/16/data/item": "<same:/17/data/response/output/2>",
        },
        "final": {"/output/2/call_id": "call_b", "/output/3": "<absent>"},
        "final_is": "/last/data/response",
        "text": "Checking.",
    });

    refusal_after_a_tool_call_is_sent_whole_after_it: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("f"), "{}"),
            chunk(json!({"refusal": "No"}), Value::Null),
            chunk(json!({"refusal": "pe."}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/8/data/delta": "Nope.",
            "/9/data/refusal": "Nope.",
            "/11/data/item": "<same:/12/data/response/output/1>",
        },
        "final": {"/output/1/content": [{"type": "refusal", "refusal": "Nope."}]},
        "final_is": "/last/data/response",
    });

    switching_between_text_and_refusal_closes_the_part: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"content": "Sure"}), Value::Null),
            chunk(json!({"refusal": "but no"}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "names_from": 2,
        "names": [
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
        ],
        "events": {"/7/data/content_index": 1, "/8/data/content_index": 1},
        "final": {"/output/0/content": [
            {"type": "output_text", "text": "Sure", "annotations": [], "logprobs": []},
            {"type": "refusal", "refusal": "but no"},
        ]},
    });

    streamed_logprobs_reach_each_delta_and_every_done_event: json!({
        "request": {"model": "m", "include": [LOGPROBS], "top_logprobs": 1},
        "steps": whole(vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            logprob_chunk("Hi", -0.25),
            logprob_chunk(" there", -0.5),
            chunk(json!({}), json!("stop")),
            usage_chunk(),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/3/data/part/logprobs": [],
            // A delta's logprobs are its own tokens', in the events' shape (no bytes).
            "/4/data/logprobs": [{"token": "Hi", "logprob": -0.25, "top_logprobs": [
                {"token": "Hi", "logprob": -0.25}, {"token": "~", "logprob": -1.25}]}],
            "/5/data/logprobs": [{"token": " there", "logprob": -0.5, "top_logprobs": [
                {"token": " there", "logprob": -0.5}, {"token": "~", "logprob": -1.5}]}],
            "/6/data/text": "Hi there",
            "/6/data/logprobs/0": "<same:/4/data/logprobs/0>",
            "/6/data/logprobs/1": "<same:/5/data/logprobs/0>",
            "/6/data/logprobs/2": "<absent>",
            "/7/data/part": {"type": "output_text", "text": "Hi there", "annotations": [],
                             "logprobs": [
                {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
                    {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                    {"token": "~", "logprob": -1.25, "bytes": [126]}]},
                {"token": " there", "logprob": -0.5, "bytes": [32, 116, 104, 101, 114, 101],
                 "top_logprobs": [
                    {"token": " there", "logprob": -0.5, "bytes": [32, 116, 104, 101, 114, 101]},
                    {"token": "~", "logprob": -1.5, "bytes": [126]}]},
            ]},
            "/8/data/item/content/0": "<same:/7/data/part>",
            "/9/data/response/output/0": "<same:/8/data/item>",
            "/9/data/response/top_logprobs": 1,
        },
        "final_is": "/last/data/response",
        "deltas": "Hi there",
    });

    streamed_logprobs_not_asked_for_are_not_shown: json!({
        "request": {"model": "m", "top_logprobs": 1},
        "steps": whole(vec![logprob_chunk("Hi", -0.25), chunk(json!({}), json!("stop"))]),
        "events": {
            "/4/data/logprobs": [],
            "/5/data/logprobs": [],
            "/6/data/part/logprobs": [],
        },
        "final": {"/output/0/content/0/logprobs": []},
    });

    // Text held back behind an open call is sent whole, its logprobs with it.
    held_back_text_keeps_its_logprobs: json!({
        "request": {"model": "m", "include": [LOGPROBS]},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("f"), "{}"),
            logprob_chunk("a", -0.1),
            logprob_chunk(" b", -0.2),
            chunk(json!({}), json!("stop")),
        ]),
        "names_from": 6,
        "names": [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/8/data/delta": "a b",
            "/8/data/logprobs/0/token": "a",
            "/8/data/logprobs/1/token": " b",
            "/9/data/logprobs": "<same:/8/data/logprobs>",
            "/10/data/part/logprobs/1/bytes": [32, 98],
            "/11/data/item": "<same:/12/data/response/output/1>",
        },
        "final_is": "/last/data/response",
    });

    streamed_reasoning_comes_first_as_a_reasoning_item: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            reasoning_chunk("reasoning_content", "Let"),
            reasoning_chunk("reasoning_content", " me think."),
            chunk(json!({"content": "Done"}), Value::Null),
            chunk(json!({"content": "."}), Value::Null),
            chunk(json!({}), json!("stop")),
            reasoning_usage_chunk(),
        ]),
        "names": [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/2/data": {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                        "item": {"type": "reasoning", "id": "<hex:rs_>", "summary": [], "content": [],
                                 "status": "in_progress"}},
            "/3/data": {"type": "response.content_part.added", "sequence_number": 3,
                        "item_id": "<same:/2/data/item/id>", "output_index": 0, "content_index": 0,
                        "part": {"type": "reasoning_text", "text": ""}},
            "/4/data": {"type": "response.reasoning_text.delta", "sequence_number": 4,
                        "item_id": "<same:/2/data/item/id>", "output_index": 0, "content_index": 0,
                        "delta": "Let"},
            "/5/data/delta": " me think.",
            "/6/data": {"type": "response.reasoning_text.done", "sequence_number": 6,
                        "item_id": "<same:/2/data/item/id>", "output_index": 0, "content_index": 0,
                        "text": "Let me think."},
            "/7/data/part": {"type": "reasoning_text", "text": "Let me think."},
            "/8/data/item": {"type": "reasoning", "id": "<same:/2/data/item/id>", "summary": [],
                             "status": "completed",
                             "content": [{"type": "reasoning_text", "text": "Let me think."}]},
            "/9/data/output_index": 1,
            "/9/data/item/type": "message",
            "/11/data/output_index": 1,
            "/11/data/item_id": "<same:/9/data/item/id>",
            "/16/data/response/output/0": "<same:/8/data/item>",
            "/16/data/response/output/1": "<same:/15/data/item>",
            "/16/data/response/usage/output_tokens_details/reasoning_tokens": 2,
        },
        "final_is": "/last/data/response",
        "deltas": "Done.",
        "text": "Done.",
    });

    // vLLM since 0.10 sends `reasoning`; during the rename some send both.
    the_reasoning_field_streams_alike_and_once: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            reasoning_chunk("reasoning", "Hmm"),
            chunk(json!({"reasoning": ".", "reasoning_content": "."}), Value::Null),
            chunk(json!({"content": "Ok"}), Value::Null),
            chunk(json!({}), json!("stop")),
        ]),
        "events": {
            "/4/data/delta": "Hmm",
            "/5/data/delta": ".",
            "/6/data/text": "Hmm.",
        },
        "final": {"/output/0/content": [{"type": "reasoning_text", "text": "Hmm."}],
                  "/output/1/content/0/text": "Ok"},
    });

    streamed_reasoning_before_a_tool_call: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            reasoning_chunk("reasoning_content", "Call f."),
            tool_delta(0, Some("call_a"), Some("f"), "{}"),
            chunk(json!({}), json!("tool_calls")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {"/8/data/output_index": 1, "/8/data/item/type": "function_call"},
        "final": {"/output/0/type": "reasoning", "/output/1/type": "function_call",
                  "/output/2": "<absent>"},
    });

    // Reasoning that starts while a call is open waits for it, as text does.
    reasoning_after_an_open_call_is_sent_whole_after_it: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            tool_delta(0, Some("call_a"), Some("f"), "{"),
            reasoning_chunk("reasoning_content", "more"),
            reasoning_chunk("reasoning_content", " thought"),
            tool_delta(0, None, None, "}"),
            chunk(json!({}), json!("tool_calls")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "events": {
            "/7/data/item/type": "reasoning",
            "/7/data/output_index": 1,
            "/9/data/delta": "more thought",
            "/12/data/item": "<same:/13/data/response/output/1>",
        },
        "final_is": "/last/data/response",
    });

    // A reply cut during its reasoning: the reasoning is incomplete, and an
    // empty message follows, as in a whole answer.
    a_stream_cut_during_its_reasoning_still_has_a_message: json!({
        "request": {"model": "m"},
        "steps": whole(vec![
            reasoning_chunk("reasoning_content", "Long"),
            chunk(json!({}), json!("length")),
        ]),
        "names_from": 2,
        "names": [
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ],
        "events": {"/7/data/item/status": "incomplete", "/8/data/output_index": 1},
        "final": {"/status": "incomplete", "/output/0/status": "incomplete",
                  "/output/1/status": "incomplete", "/output/1/content/0/text": ""},
        "text": "",
    });

    an_error_during_the_reasoning_closes_it: json!({
        "request": {"model": "m"},
        "steps": [
            {"start": null},
            {"chunk": reasoning_chunk("reasoning_content", "thinking")},
            {"error": ["upstream went away", "stream_error"], "emits": 5},
        ],
        "names_from": 5,
        "names": ["response.reasoning_text.done", "response.content_part.done",
                  "response.output_item.done", "error", "response.failed"],
        "events": {"/7/data/item/status": "incomplete"},
        "final": {"/status": "failed", "/output/0/type": "reasoning",
                  "/output/0/content/0/text": "thinking", "/output/1": "<absent>"},
    });

    malformed_chunks_do_not_panic: json!({
        "request": null,
        "steps": whole(vec![
            json!(null),
            json!(1),
            json!({"choices": null}),
            json!({"choices": [1, null]}),
            json!({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
            json!({"choices": [{"delta": "x", "finish_reason": 5}]}),
            json!({"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [null, 3, {"function": null}]}}]}),
            json!({"choices": [{"delta": {"reasoning": 5, "reasoning_content": [1]}}]}),
            json!({"choices": [{"delta": {}, "logprobs": {"content": [null, {"token": 2}]}}]}),
            json!({"usage": 3}),
        ]),
        "final": {"/model": ""},
        "text": "",
    });
}
