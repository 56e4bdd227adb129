//! Response cases: a whole chat completion (and the request) in, the
//! Response object and its assistant text out.

use serde_json::{Value, json};

use super::{run_assistant_text_case, run_response_case};

macro_rules! response_cases {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_response_case(stringify!($name), $case);
            }
        )*
    };
}

macro_rules! assistant_text_cases {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_assistant_text_case(stringify!($name), $case);
            }
        )*
    };
}

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

fn tool_call_reply(content: Value) -> Value {
    json!({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": content,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":1}"}},
                {"type": "function", "function": {"name": "v"}},
            ],
        }}],
    })
}

fn with_refusal() -> Value {
    let mut chat = chat_reply(Value::Null, "stop");
    chat["choices"][0]["message"]["refusal"] = json!("I can't help with that.");
    chat
}

fn with_usage(usage: Value) -> Value {
    let mut chat = chat_reply(json!("x"), "stop");
    chat["usage"] = usage;
    chat
}

fn with_cache_write_tokens() -> Value {
    let mut chat = chat_reply(json!("x"), "stop");
    chat["usage"]["prompt_tokens_details"]["cache_write_tokens"] = json!(9);
    chat
}

/// A chat reply whose content came with logprobs (`top_logprobs: 2`): the
/// second token has no bytes, and an entry without a logprob is no entry.
fn with_logprobs() -> Value {
    let mut chat = chat_reply(json!("Hi there"), "stop");
    chat["choices"][0]["logprobs"] = json!({"content": [
        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
            {"token": "Hey", "logprob": -1.5, "bytes": null},
        ]},
        {"token": " there", "logprob": -0.5, "top_logprobs": []},
        {"token": "?"},
        "not an entry",
    ], "refusal": null});
    chat
}

/// A chat message with reasoning under `field`, and then `content`.
fn with_reasoning(field: &str, content: Value, finish_reason: &str) -> Value {
    let mut chat = chat_reply(content, finish_reason);
    chat["choices"][0]["message"][field] = json!("Let me think.");
    chat
}

fn tool_calls_after_reasoning() -> Value {
    let mut chat = tool_call_reply(Value::Null);
    chat["choices"][0]["message"]["reasoning_content"] = json!("Calls are needed.");
    chat
}

/// A malformed chat reply still gives a Response, without panicking.
fn malformed(chat: Value) -> Value {
    json!({
        "chat": chat,
        "request": [1, 2],
        "expect": {"/object": "response", "/output": "<array>"},
        "text_excludes": "\u{0}",
    })
}

response_cases! {
    completed_reply_with_default_echo_fields: json!({
        "chat": chat_reply(json!("Hello there"), "stop"),
        "request": {"model": "client-model", "input": "hi"},
        "id": "resp_1",
        "created_at": 1700,
        "expect": {"": {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700,
            "status": "completed",
            "error": null,
            "incomplete_details": null,
            "model": "client-model",
            "output": [{
                "type": "message", "id": "<hex:msg_>", "status": "completed", "role": "assistant",
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
            "top_logprobs": null,
        }},
        "text": "Hello there",
    });

    request_fields_are_echoed: json!({
        "chat": chat_reply(json!("{}"), "stop"),
        "request": {
            "model": "client-model", "input": "hi", "instructions": "be nice",
            "metadata": {"trace": "t1"}, "previous_response_id": "resp_0", "temperature": 0.2,
            "top_p": 0.8, "max_output_tokens": 100,
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "tool_choice": "required", "parallel_tool_calls": false,
            "text": {"format": {"type": "json_object"}}, "store": false, "user": "alice",
        },
        "id": "resp_2",
        "created_at": 5,
        "expect": {
            "/instructions": "be nice",
            "/metadata": {"trace": "t1"},
            "/previous_response_id": "resp_0",
            "/temperature": 0.2,
            "/top_p": 0.8,
            "/max_output_tokens": 100,
            "/tools": [{"type": "function", "name": "f", "parameters": {}, "strict": true}],
            "/tool_choice": "required",
            "/parallel_tool_calls": false,
            "/text": {"format": {"type": "json_object"}},
            "/store": false,
            "/user": "alice",
        },
    });

    echoed_tools_show_the_effective_strict: json!({
        "chat": chat_reply(json!("ok"), "stop"),
        "request": {"model": "m", "tools": [
            {"type": "function", "name": "a"},
            {"type": "function", "name": "b", "strict": false},
            {"type": "function", "name": "c", "strict": null, "description": "d"},
        ]},
        "expect": {"/tools": [
            {"type": "function", "name": "a", "strict": true},
            {"type": "function", "name": "b", "strict": false},
            {"type": "function", "name": "c", "strict": true, "description": "d"},
        ]},
    });

    length_is_incomplete: json!({
        "chat": chat_reply(json!("reply 1"), "length"),
        "request": {"model": "m", "input": "hi", "max_output_tokens": 2},
        "expect": {
            "/status": "incomplete",
            "/incomplete_details": {"reason": "max_output_tokens"},
            "/output/0/status": "incomplete",
        },
        "text": "reply 1",
    });

    content_filter_is_incomplete: json!({
        "chat": chat_reply(json!(""), "content_filter"),
        "request": {"model": "m", "input": "hi", "max_output_tokens": 2},
        "expect": {
            "/status": "incomplete",
            "/incomplete_details": {"reason": "content_filter"},
        },
    });

    tool_calls_become_function_call_items: json!({
        "chat": tool_call_reply(Value::Null),
        "request": {"model": "m"},
        "expect": {
            // No message item for a pure tool-call turn.
            "/output": [
                {"type": "function_call", "id": "<hex:fc_>", "call_id": "call_1",
                 "name": "w", "arguments": "{\"c\":1}", "status": "completed"},
                {"type": "function_call", "id": "<hex:fc_>", "call_id": "<hex:call_>",
                 "name": "v", "arguments": "", "status": "completed"},
            ],
            "/usage": null,
        },
        "text": "",
    });

    tool_calls_with_text_follow_a_message_item: json!({
        "chat": tool_call_reply(json!("let me check")),
        "request": {"model": "m"},
        "expect": {
            "/output/0/type": "message",
            "/output/1/type": "function_call",
            "/output/2/type": "function_call",
            "/output/3": "<absent>",
        },
    });

    refusal_becomes_a_refusal_part: json!({
        "chat": with_refusal(),
        "request": {"model": "m"},
        "expect": {"/output/0/content": [{"type": "refusal", "refusal": "I can't help with that."}]},
        "text": "",
    });

    text_parts_are_joined: json!({
        "chat": chat_reply(json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]), "stop"),
        "request": {"model": "m"},
        "text": "ab",
    });

    usage_defaults_missing_details_and_total: json!({
        "chat": with_usage(json!({"prompt_tokens": 4, "completion_tokens": 6})),
        "request": {"model": "m"},
        "expect": {"/usage": {
            "input_tokens": 4, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 10,
        }},
    });

    cache_write_tokens_are_reported: json!({
        "chat": with_cache_write_tokens(),
        "request": {"model": "m"},
        "expect": {"/usage/input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 9}},
    });

    logprobs_reach_the_output_text_part: json!({
        "chat": with_logprobs(),
        "request": {"model": "m", "include": ["message.output_text.logprobs"], "top_logprobs": 2},
        "expect": {
            "/output/0/content": [{"type": "output_text", "text": "Hi there", "annotations": [],
                "logprobs": [
                    {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
                        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                        {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]},
                    ]},
                    {"token": " there", "logprob": -0.5, "bytes": [32, 116, 104, 101, 114, 101],
                     "top_logprobs": []},
                ]}],
            "/top_logprobs": 2,
        },
        "text": "Hi there",
    });

    logprobs_not_asked_for_are_not_shown: json!({
        "chat": with_logprobs(),
        "request": {"model": "m", "top_logprobs": 2},
        "expect": {"/output/0/content/0/logprobs": []},
    });

    logprobs_of_no_content_have_no_part: json!({
        "chat": with_refusal(),
        "request": {"model": "m", "include": ["message.output_text.logprobs"]},
        // Chat's refusal logprobs have no place on a refusal part.
        "expect": {"/output/0/content": [{"type": "refusal", "refusal": "I can't help with that."}]},
    });

    reasoning_content_becomes_a_reasoning_item_first: json!({
        "chat": with_reasoning("reasoning_content", json!("Done."), "stop"),
        "request": {"model": "m"},
        "expect": {
            "/output/0": {"type": "reasoning", "id": "<hex:rs_>", "summary": [], "status": "completed",
                          "content": [{"type": "reasoning_text", "text": "Let me think."}]},
            "/output/1/type": "message",
            "/output/1/content/0/text": "Done.",
            "/output/2": "<absent>",
            "/usage/output_tokens_details/reasoning_tokens": 2,
        },
        "text": "Done.",
    });

    the_reasoning_field_is_read_alike: json!({
        "chat": with_reasoning("reasoning", json!("Done."), "stop"),
        "request": {"model": "m"},
        "expect": {
            "/output/0/type": "reasoning",
            "/output/0/content": [{"type": "reasoning_text", "text": "Let me think."}],
            "/output/1/type": "message",
        },
        "text": "Done.",
    });

    reasoning_comes_before_tool_calls: json!({
        "chat": tool_calls_after_reasoning(),
        "request": {"model": "m"},
        "expect": {
            "/output/0/type": "reasoning",
            "/output/0/content/0/text": "Calls are needed.",
            "/output/1/type": "function_call",
            "/output/2/type": "function_call",
            "/output/3": "<absent>",
        },
    });

    an_answer_cut_during_its_reasoning_has_an_incomplete_reasoning_item: json!({
        "chat": with_reasoning("reasoning_content", json!(""), "length"),
        "request": {"model": "m"},
        "expect": {
            "/status": "incomplete",
            "/output/0/type": "reasoning",
            "/output/0/status": "incomplete",
            "/output/1/type": "message",
            "/output/1/status": "incomplete",
            "/output/1/content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
        },
        "text": "",
    });

    empty_or_odd_reasoning_is_no_item: json!({
        "chat": {"choices": [{"message": {"content": "x", "reasoning_content": "",
                                          "reasoning": {"effort": "low"}}}]},
        "request": {"model": "m"},
        "expect": {"/output/0/type": "message", "/output/1": "<absent>"},
    });

    malformed_null_reply: malformed(json!(null));
    malformed_string_reply: malformed(json!("text"));
    malformed_string_choices: malformed(json!({"choices": "x"}));
    malformed_no_choices: malformed(json!({"choices": []}));
    malformed_null_choice: malformed(json!({"choices": [null]}));
    malformed_message_and_usage: malformed(
        json!({"choices": [{"message": 5, "finish_reason": 3}], "usage": "lots"})
    );
    malformed_tool_calls: malformed(
        json!({"choices": [{"message": {"tool_calls": [null, 1, {"function": 2}]}}]})
    );
    malformed_logprobs_are_no_logprobs: json!({
        "chat": {"choices": [{"message": {"content": "x"}, "logprobs": {"content": [
            {"token": 1, "logprob": -1}, null, {"token": "x", "logprob": "low"},
            {"token": "x", "logprob": -1, "top_logprobs": "many"},
        ]}}]},
        "request": {"model": "m", "include": ["message.output_text.logprobs"]},
        "expect": {"/output/0/content/0/logprobs": [
            {"token": "x", "logprob": -1, "bytes": [120], "top_logprobs": []},
        ]},
    });
    malformed_usage_counts: malformed(
        json!({"usage": {"prompt_tokens": -1, "completion_tokens": "2"}})
    );
}

assistant_text_cases! {
    assistant_text_skips_content_that_is_no_list: json!({
        "response": {"output": [{"type": "message", "content": "x"}]},
        "text": "",
    });
    assistant_text_of_null_is_empty: json!({"response": null, "text": ""});
}
