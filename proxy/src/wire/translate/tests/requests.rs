//! Request cases: a Responses request in, the chat request (or the refusal) out.

use serde_json::{Value, json};

use super::run_request_case;
use crate::wire::translate::request::responses_to_chat_request;

macro_rules! request_cases {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_request_case(stringify!($name), $case);
            }
        )*
    };
}

/// `{"model": "m", "input": "x"}` plus `extra`.
fn with(extra: Value) -> Value {
    let mut request = json!({"model": "m", "input": "x"});
    for (key, value) in extra.as_object().unwrap() {
        request[key] = value.clone();
    }
    request
}

fn error_at(request: Value, param: &str) -> Value {
    json!({"request": request, "error": {"param": param}})
}

request_cases! {
    instructions_history_then_string_input: json!({
        "request": {"model": "client-model", "instructions": "be brief", "input": "hi"},
        "history": [
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "reply"},
        ],
        "expect": {"": {
            "model": "up-model",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": "hi"},
            ],
        }},
    });

    message_items_and_parts: json!({
        "request": {"model": "m", "input": [
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
        ]},
        "expect": {"/messages": [
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
        ]},
    });

    sampling_parameters_are_mapped_and_state_fields_dropped: json!({
        "request": {
            "model": "m", "input": "x", "max_output_tokens": 42, "temperature": 0.5,
            "top_p": 0.9, "user": "u-1", "top_logprobs": null, "metadata": {"k": "v"},
            "store": true, "previous_response_id": "resp_1", "truncation": "disabled",
        },
        "expect": {
            "/max_completion_tokens": 42,
            "/temperature": 0.5,
            "/top_p": 0.9,
            "/user": "u-1",
            "/max_output_tokens": "<absent>",
            "/metadata": "<absent>",
            "/store": "<absent>",
            "/previous_response_id": "<absent>",
            "/truncation": "<absent>",
            "/stream": "<absent>",
            "/stream_options": "<absent>",
            "/response_format": "<absent>",
            "/tools": "<absent>",
            "/input": "<absent>",
        },
    });

    explicit_nulls_are_not_forwarded: json!({
        "request": {
            "model": "m", "input": "x", "instructions": null, "temperature": null,
            "max_output_tokens": null, "tools": null, "text": null,
        },
        "expect": {"": {"model": "up-model", "messages": [{"role": "user", "content": "x"}]}},
    });

    json_schema_format_becomes_response_format: json!({
        "request": with(json!({"text": {"format": {
            "type": "json_schema", "name": "thing",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "strict": true, "description": "d",
        }}})),
        "expect": {"/response_format": {"type": "json_schema", "json_schema": {
            "name": "thing",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "strict": true, "description": "d",
        }}},
    });

    json_schema_format_gets_a_default_name: json!({
        "request": with(json!({"text": {"format": {"type": "json_schema", "schema": {}}}})),
        "expect": {"/response_format/json_schema/name": "response"},
    });

    json_object_format_is_kept: json!({
        "request": with(json!({"text": {"format": {"type": "json_object"}}})),
        "expect": {"/response_format": {"type": "json_object"}},
    });

    text_format_sends_no_response_format: json!({
        "request": with(json!({"text": {"format": {"type": "text"}, "verbosity": "low"}})),
        "expect": {"/response_format": "<absent>"},
    });

    unknown_text_format_names_the_param: error_at(
        with(json!({"text": {"format": {"type": "yaml"}}})),
        "text.format.type",
    );

    json_schema_without_schema_names_the_param: error_at(
        with(json!({"text": {"format": {"type": "json_schema", "name": "n"}}})),
        "text.format.schema",
    );

    function_tools_and_tool_choice: json!({
        "request": with(json!({
            "tools": [
                {"type": "function", "name": "get_weather", "description": "w",
                 "parameters": {"type": "object", "properties": {}}, "strict": true},
                {"type": "function", "name": "noop"},
            ],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
        })),
        "expect": {
            "/tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "w",
                  "parameters": {"type": "object", "properties": {}}, "strict": true}},
                {"type": "function", "function": {"name": "noop", "strict": true}},
            ],
            "/tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "/parallel_tool_calls": false,
        },
    });

    // A Responses function tool is strict unless it says otherwise; a chat one is not.
    omitted_strict_becomes_true_and_explicit_false_stays: json!({
        "request": with(json!({"tools": [
            {"type": "function", "name": "a"},
            {"type": "function", "name": "b", "strict": false},
            {"type": "function", "name": "c", "strict": null},
            {"type": "function", "name": "d", "strict": true},
        ]})),
        "expect": {
            "/tools/0/function/strict": true,
            "/tools/1/function/strict": false,
            "/tools/2/function/strict": true,
            "/tools/3/function/strict": true,
        },
    });

    tool_choice_auto_is_kept: json!({
        "request": with(json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": "auto"})),
        "expect": {"/tool_choice": "auto"},
    });

    tool_choice_none_is_kept: json!({
        "request": with(json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": "none"})),
        "expect": {"/tool_choice": "none"},
    });

    tool_choice_required_is_kept: json!({
        "request": with(json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": "required"})),
        "expect": {"/tool_choice": "required"},
    });

    tool_settings_are_dropped_without_tools: json!({
        "request": with(json!({"tools": [], "tool_choice": "none", "parallel_tool_calls": true})),
        "expect": {
            "/tools": "<absent>",
            "/tool_choice": "<absent>",
            "/parallel_tool_calls": "<absent>",
        },
    });

    tool_of_another_type_names_the_param: error_at(
        with(json!({"tools": [{"type": "web_search_preview"}]})),
        "tools[0].type",
    );

    tool_without_a_name_names_the_param: error_at(
        with(json!({"tools": [{"type": "function", "name": "a"}, {"type": "function"}]})),
        "tools[1].name",
    );

    tools_that_are_no_list_name_the_param: error_at(
        with(json!({"tools": {"type": "function"}})),
        "tools",
    );

    tool_choice_of_another_type_names_the_param: error_at(
        with(json!({"tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "file_search"}})),
        "tool_choice",
    );

    unknown_tool_choice_names_the_param: error_at(
        with(json!({"tool_choice": "sometimes"})),
        "tool_choice",
    );

    function_call_round_trip_items: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "w",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_b", "name": "w", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b",
             "output": [{"type": "input_text", "text": "rain"}, {"type": "input_text", "text": "y"}]},
            {"type": "function_call", "call_id": "call_c", "name": "w", "arguments": "{}"},
        ]},
        "expect": {"/messages": [
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
        ]},
    });

    // The function calls of one assistant turn share its message, even when
    // they come first in the input.
    function_calls_right_after_the_user_share_one_assistant_message: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "call_a", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_b", "name": "v", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "1"},
            {"type": "function_call_output", "call_id": "call_b", "output": "2"},
        ]},
        "expect": {"/messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "call_b", "type": "function", "function": {"name": "v", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "tool", "tool_call_id": "call_b", "content": "2"},
        ]},
    });

    // Text a streamed turn produced after its call is still that turn's:
    // a tool message may only follow the assistant message with the calls.
    assistant_text_after_its_calls_joins_their_message: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "call_a", "name": "w", "arguments": "{}"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "later"}]},
            {"type": "function_call_output", "call_id": "call_a", "output": "1"},
        ]},
        "expect": {"/messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "later", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
        ]},
    });

    // A refusal part is the assistant message's `refusal`, as chat answers carry it.
    assistant_refusal_parts_become_its_refusal: json!({
        "request": {"model": "m", "input": [
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Partly"},
                {"type": "refusal", "refusal": "but no"},
            ]},
            {"role": "user", "content": "why?"},
        ]},
        "expect": {"/messages": [
            {"role": "assistant", "content": null, "refusal": "No."},
            {"role": "assistant", "content": "Partly", "refusal": "but no"},
            {"role": "user", "content": "why?"},
        ]},
    });

    item_references_resolve_to_stored_items: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "item_reference", "id": "msg_1"},
            {"type": "item_reference", "id": "fc_1"},
            // `type` is optional on a reference.
            {"id": "fc_2"},
            {"type": "function_call_output", "call_id": "call_a", "output": "1"},
            {"type": "function_call_output", "call_id": "call_b", "output": "2"},
        ]},
        "items": {
            "msg_1": {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": "Looking.", "annotations": [],
                                   "logprobs": []}]},
            "fc_1": {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "w",
                     "arguments": "{}", "status": "completed"},
            "fc_2": {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "v",
                     "arguments": "{\"x\":1}", "status": "completed"},
        },
        "expect": {"/messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "call_b", "type": "function", "function": {"name": "v", "arguments": "{\"x\":1}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "tool", "tool_call_id": "call_b", "content": "2"},
        ]},
    });

    unknown_item_reference_is_not_found: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "item_reference", "id": "msg_gone"},
        ]},
        "error": {"message": "Item with id 'msg_gone' not found.", "param": "input",
                  "missing_item": "msg_gone"},
    });

    item_reference_without_an_id_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": "item_reference"}]}),
        "input[0].id",
    );

    stream_flag_requests_usage: json!({
        "request": with(json!({"stream": true})),
        "expect": {"/stream": true, "/stream_options": {"include_usage": true}},
    });

    no_stream_flag_sends_no_stream_options: json!({
        "request": with(json!({"stream": false})),
        "expect": {"/stream": "<absent>", "/stream_options": "<absent>"},
    });

    missing_input_names_the_param: error_at(json!({"model": "m"}), "input");
    null_input_names_the_param: error_at(json!({"model": "m", "input": null}), "input");
    number_input_names_the_param: error_at(json!({"model": "m", "input": 3}), "input");
    object_input_names_the_param: error_at(
        json!({"model": "m", "input": {"role": "user", "content": "x"}}),
        "input",
    );
    string_item_names_the_param: error_at(json!({"model": "m", "input": ["hi"]}), "input[0]");
    unknown_role_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
        "input[1].role",
    );
    missing_role_names_the_param: error_at(
        json!({"model": "m", "input": [{"content": "a"}]}),
        "input[0].role",
    );
    number_role_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": 7, "content": "a"}]}),
        "input[0].role",
    );
    missing_content_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user"}]}),
        "input[0].content",
    );
    number_content_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": 5}]}),
        "input[0].content",
    );
    audio_part_names_the_param: error_at(
        json!({"model": "m", "input": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "user", "content": [{"type": "input_audio", "data": "..."}]},
        ]}),
        "input[2].content[0].type",
    );
    untyped_part_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": [{"text": "no type"}]}]}),
        "input[0].content[0].type",
    );
    assistant_image_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]}),
        "input[0].content[0].type",
    );
    image_by_file_id_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
        "input[0].content[0].image_url",
    );
    text_part_without_text_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
        "input[0].content[0].text",
    );
    text_part_with_a_number_names_the_param: error_at(
        json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]}),
        "input[0].content[0].text",
    );
    reasoning_item_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": "reasoning", "summary": []}]}),
        "input[0].type",
    );
    number_item_type_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": 1}]}),
        "input[0].type",
    );
    function_call_without_call_id_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
        "input[0].call_id",
    );
    function_call_output_without_output_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
        "input[0].output",
    );
    function_call_output_with_an_image_names_the_param: error_at(
        json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
            "output": [{"type": "input_image", "image_url": "u"}]}]}),
        "input[0].output[0].type",
    );
    list_instructions_name_the_param: error_at(
        json!({"model": "m", "input": "x", "instructions": ["a"]}),
        "instructions",
    );

    missing_input_message_is_readable: json!({
        "request": {"model": "m"},
        "error": {"message": "Missing required parameter: 'input'.", "param": "input"},
    });

    unknown_role_message_is_readable: json!({
        "request": {"model": "m", "input": [{"role": "robot", "content": "x"}]},
        "error": {
            "param": "input[0].role",
            "message_contains": "'robot'",
            "display_suffix": " (param: input[0].role)",
        },
    });
}

request_cases! {
    // What each refused field asks for, and what it takes to ask for nothing.
    background_is_refused: error_at(with(json!({"background": true})), "background");
    conversation_is_refused: error_at(with(json!({"conversation": "conv_1"})), "conversation");
    prompt_is_refused: error_at(with(json!({"prompt": {"id": "pmpt_1"}})), "prompt");
    auto_truncation_is_refused: error_at(with(json!({"truncation": "auto"})), "truncation");
    include_is_refused: error_at(
        with(json!({"include": ["message.output_text.logprobs"]})), "include");
    top_logprobs_are_refused: error_at(with(json!({"top_logprobs": 3})), "top_logprobs");
    a_reasoning_summary_is_refused: error_at(
        with(json!({"reasoning": {"effort": "low", "summary": "auto"}})), "reasoning.summary");
    an_unknown_field_is_refused_as_the_api_does: json!({
        "request": with(json!({"temprature": 0.5})),
        "error": {"param": "temprature", "message": "Unknown parameter: 'temprature'."},
    });
    defaults_of_refused_fields_ask_for_nothing: json!({
        "request": with(json!({"background": false, "truncation": "disabled", "include": [],
                               "top_logprobs": 0, "conversation": null, "prompt": null})),
        "expect": {"/messages": [{"role": "user", "content": "x"}]},
    });
    mapped_fields_reach_the_chat_request: json!({
        "request": with(json!({
            "reasoning": {"effort": "high"}, "text": {"verbosity": "low"},
            "service_tier": "flex", "prompt_cache_key": "k", "prompt_cache_retention": "24h",
            "safety_identifier": "user-hash", "metadata": {"a": "1"}, "store": false,
            "stream_options": {"include_obfuscation": false}, "max_tool_calls": 3,
        })),
        "expect": {
            "/reasoning_effort": "high", "/verbosity": "low", "/service_tier": "flex",
            "/prompt_cache_key": "k", "/prompt_cache_retention": "24h",
            "/safety_identifier": "user-hash", "/metadata": "<absent>", "/store": "<absent>",
            "/max_tool_calls": "<absent>", "/stream_options": "<absent>",
        },
    });
}

/// The field table of docs/contracts.md is this one, row for row: a field
/// added to either without the other fails here.
#[test]
fn the_contracts_table_is_the_field_table() {
    use crate::wire::translate::request::{FieldRule, RESPONSES_FIELDS};
    let doc = include_str!("../../../../../docs/contracts.md");
    let start = doc.find("<!-- responses-fields -->").expect("table start");
    let end = doc.find("<!-- /responses-fields -->").expect("table end");
    let documented: Vec<&str> = doc[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .collect();
    let expected: Vec<String> = RESPONSES_FIELDS
        .iter()
        .map(|(field, rule)| {
            let (kind, how) = match rule {
                FieldRule::Copied => ("mapped", &"the same field"),
                FieldRule::Mapped(how) => ("mapped", how),
                FieldRule::NotApplicable(why) => ("not applicable", why),
                FieldRule::Refused(why) => ("refused (400, `param`)", why),
            };
            format!("| `{field}` | {kind} | {how} |")
        })
        .collect();
    assert_eq!(documented, expected);
}

/// Each refused field, given a value that asks for something, is a 400
/// naming it (the accepted ones are in `mapped_fields_reach_the_chat_request`).
#[test]
fn every_field_of_the_table_is_mapped_or_refused() {
    use crate::wire::translate::request::{FieldRule, RESPONSES_FIELDS};
    let asking = json!({
        "background": true, "conversation": "conv_1", "prompt": {"id": "pmpt_1"},
        "truncation": "auto", "include": ["message.output_text.logprobs"], "top_logprobs": 2,
    });
    for (field, rule) in RESPONSES_FIELDS {
        if let FieldRule::Refused(_) = rule {
            let value = asking
                .get(*field)
                .unwrap_or_else(|| panic!("no value for {field}"));
            let request = with(json!({ *field: value.clone() }));
            let refused =
                responses_to_chat_request(&request, &[], &|_| None, "up").expect_err(field);
            assert_eq!(refused.param.as_deref(), Some(*field));
        }
    }
    assert_eq!(
        asking.as_object().unwrap().len(),
        RESPONSES_FIELDS
            .iter()
            .filter(|(_, rule)| matches!(rule, FieldRule::Refused(_)))
            .count(),
        "a value for each refused field"
    );
}
