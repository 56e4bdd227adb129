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
    include_values_that_chat_cannot_produce_are_refused: json!({
        "request": with(json!({"include": ["message.output_text.logprobs",
                                           "reasoning.encrypted_content"]})),
        "error": {"param": "include", "message_contains": "'reasoning.encrypted_content'"},
    });
    a_reasoning_summary_is_refused: error_at(
        with(json!({"reasoning": {"effort": "low", "summary": "auto"}})), "reasoning.summary");
    an_unknown_field_is_refused_as_the_api_does: json!({
        "request": with(json!({"temprature": 0.5})),
        "error": {"param": "temprature", "message": "Unknown parameter: 'temprature'."},
    });
    defaults_of_refused_fields_ask_for_nothing: json!({
        "request": with(json!({"background": false, "truncation": "disabled", "include": [],
                               "top_logprobs": 0, "conversation": null, "prompt": null})),
        "expect": {"": {"model": "up-model", "messages": [{"role": "user", "content": "x"}]}},
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

request_cases! {
    // `include` and `top_logprobs`: the logprobs of the text, as chat asks for them.
    included_logprobs_ask_chat_for_logprobs: json!({
        "request": with(json!({"include": ["message.output_text.logprobs"]})),
        "expect": {"/logprobs": true, "/top_logprobs": "<absent>", "/include": "<absent>"},
    });
    top_logprobs_go_beside_the_included_logprobs: json!({
        "request": with(json!({"include": ["message.output_text.logprobs"], "top_logprobs": 5,
                               "stream": true})),
        "expect": {"/logprobs": true, "/top_logprobs": 5, "/stream": true},
    });
    the_fewest_and_the_most_top_logprobs_are_sent: json!({
        "request": with(json!({"include": ["message.output_text.logprobs"], "top_logprobs": 20})),
        "expect": {"/logprobs": true, "/top_logprobs": 20},
    });
    top_logprobs_alone_ask_chat_for_nothing: json!({
        // The API returns no logprobs without the include: nor does chat get asked.
        "request": with(json!({"top_logprobs": 5})),
        "expect": {"/logprobs": "<absent>", "/top_logprobs": "<absent>"},
    });
    too_many_top_logprobs_are_refused_as_the_api_does: json!({
        "request": with(json!({"include": ["message.output_text.logprobs"], "top_logprobs": 21})),
        "error": {"param": "top_logprobs", "message":
            "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 instead."},
    });
    negative_top_logprobs_are_refused: json!({
        "request": with(json!({"top_logprobs": -1})),
        "error": {"param": "top_logprobs", "message":
            "Invalid 'top_logprobs': integer below minimum value. Expected a value >= 0, but got -1 instead."},
    });
    top_logprobs_that_are_no_integer_name_the_param: error_at(
        with(json!({"top_logprobs": "3"})), "top_logprobs");
    fractional_top_logprobs_name_the_param: error_at(
        with(json!({"top_logprobs": 2.5})), "top_logprobs");
    an_unknown_include_value_is_invalid: json!({
        "request": with(json!({"include": ["message.output_text.logprobs", "everything"]})),
        "error": {"param": "include[1]", "message_contains": "Invalid value: 'everything'."},
    });
    include_that_is_no_list_names_the_param: error_at(
        with(json!({"include": "message.output_text.logprobs"})), "include");
    an_include_value_that_is_no_string_names_the_param: error_at(
        with(json!({"include": [7]})), "include[0]");

    // Reasoning items of earlier turns (the output of a translated reasoning
    // answer, sent back as input) are the model's own: chat takes none back.
    reasoning_items_are_left_out: json!({
        "request": {"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "content": [{"type": "reasoning_text", "text": "thinking"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            {"type": "reasoning", "id": "rs_2", "summary": []},
            {"type": "function_call", "call_id": "call_a", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "1"},
        ]},
        "expect": {"/messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
        ]},
    });
    a_reference_to_a_reasoning_item_adds_nothing: json!({
        "request": {"model": "m", "input": [
            {"type": "item_reference", "id": "rs_1"},
            {"role": "user", "content": "q"},
        ]},
        "items": {"rs_1": {"type": "reasoning", "id": "rs_1", "summary": [], "status": "completed",
                           "content": [{"type": "reasoning_text", "text": "thinking"}]}},
        "expect": {"/messages": [{"role": "user", "content": "q"}]},
    });
}

/// The rows between `<!-- {marker} -->` and `<!-- /{marker} -->` of
/// docs/contracts.md, and the rows a rule table makes.
fn documented_and_expected(
    marker: &str,
    table: &[(&str, crate::wire::translate::request::FieldRule)],
) -> (Vec<String>, Vec<String>) {
    use crate::wire::translate::request::FieldRule;
    let doc = include_str!("../../../../../docs/contracts.md");
    let start = doc
        .find(&format!("<!-- {marker} -->"))
        .expect("table start");
    let end = doc.find(&format!("<!-- /{marker} -->")).expect("table end");
    let documented = doc[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(str::to_owned)
        .collect();
    let expected = table
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
    (documented, expected)
}

/// The field table of docs/contracts.md is this one, row for row: a field
/// added to either without the other fails here.
#[test]
fn the_contracts_table_is_the_field_table() {
    use crate::wire::translate::request::RESPONSES_FIELDS;
    let (documented, expected) = documented_and_expected("responses-fields", RESPONSES_FIELDS);
    assert_eq!(documented, expected);
}

/// The same for the values of `include`.
#[test]
fn the_contracts_include_table_is_the_include_table() {
    use crate::wire::translate::request::INCLUDE_VALUES;
    let (documented, expected) = documented_and_expected("responses-include", INCLUDE_VALUES);
    assert_eq!(documented, expected);
}

/// One value of every field of the table, and what it must do to the chat
/// request (`expect`, pointers as in the cases; `with`: other fields it
/// needs). A field added to the table without a case here fails.
fn field_examples() -> Value {
    json!({
        "model": {"value": "client-model", "expect": {"/model": "up-model"}},
        "input": {"value": [{"role": "user", "content": "y"}],
                  "expect": {"/messages": [{"role": "user", "content": "y"}]}},
        "instructions": {"value": "sys",
                         "expect": {"/messages/0": {"role": "system", "content": "sys"}}},
        // The caller looks the conversation up; the id itself goes nowhere.
        "previous_response_id": {"value": "resp_1", "expect": {"/messages": [{"role": "user", "content": "x"}]}},
        "max_output_tokens": {"value": 9, "expect": {"/max_completion_tokens": 9}},
        "temperature": {"value": 0.5, "expect": {}},
        "top_p": {"value": 0.9, "expect": {}},
        "user": {"value": "u-1", "expect": {}},
        "metadata": {"value": {"a": "1"}, "expect": {}},
        "service_tier": {"value": "flex", "expect": {}},
        "prompt_cache_key": {"value": "k", "expect": {}},
        "prompt_cache_retention": {"value": "24h", "expect": {}},
        "safety_identifier": {"value": "h", "expect": {}},
        "reasoning": {"value": {"effort": "low"}, "expect": {"/reasoning_effort": "low"}},
        "text": {"value": {"format": {"type": "json_object"}, "verbosity": "high"},
                 "expect": {"/response_format": {"type": "json_object"}, "/verbosity": "high"}},
        "tools": {"value": [{"type": "function", "name": "f"}],
                  "expect": {"/tools/0/function/name": "f"}},
        "tool_choice": {"value": "required", "with": {"tools": [{"type": "function", "name": "f"}]},
                        "expect": {"/tool_choice": "required"}},
        "parallel_tool_calls": {"value": false, "with": {"tools": [{"type": "function", "name": "f"}]},
                                "expect": {"/parallel_tool_calls": false}},
        "stream": {"value": true, "expect": {"/stream_options": {"include_usage": true}}},
        "store": {"value": false, "expect": {}},
        "stream_options": {"value": {"include_obfuscation": false}, "expect": {}},
        "max_tool_calls": {"value": 3, "expect": {}},
        "truncation": {"value": "auto"},
        "include": {"value": ["message.output_text.logprobs"], "expect": {"/logprobs": true}},
        "top_logprobs": {"value": 4, "with": {"include": ["message.output_text.logprobs"]},
                         "expect": {"/top_logprobs": 4}},
        "conversation": {"value": "conv_1"},
        "prompt": {"value": {"id": "pmpt_1"}},
        "background": {"value": true},
    })
}

/// Every field of the table, given a value that asks for something, does
/// what its rule says: copied under its name, mapped as its example
/// expects, dropped when it means nothing to chat, or a 400 naming it.
#[test]
fn every_field_of_the_table_is_mapped_or_refused() {
    use crate::wire::translate::request::{FieldRule, RESPONSES_FIELDS};
    let examples = field_examples();
    let examples = examples.as_object().unwrap();
    for (field, rule) in RESPONSES_FIELDS {
        let example = examples
            .get(*field)
            .unwrap_or_else(|| panic!("no example for {field}"));
        let mut extra = example.get("with").cloned().unwrap_or_else(|| json!({}));
        extra[*field] = example["value"].clone();
        let request = with(extra);
        let result = responses_to_chat_request(&request, &[], &|_| None, "up-model");
        match rule {
            FieldRule::Refused(_) => {
                let refused = result.expect_err(field);
                assert_eq!(refused.param.as_deref(), Some(*field));
            }
            _ => {
                let chat = result.unwrap_or_else(|err| panic!("{field}: {err}"));
                super::check(field, "chat", example.get("expect"), &chat);
                match rule {
                    FieldRule::Copied => assert_eq!(chat[*field], example["value"], "{field}"),
                    FieldRule::NotApplicable(_) => {
                        assert!(chat.get(*field).is_none(), "{field}: {chat}");
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        examples.len(),
        RESPONSES_FIELDS.len(),
        "an example per field"
    );
}

/// Every value `include` may hold is mapped (the chat request asks for it)
/// or refused with a 400 naming `include`.
#[test]
fn every_include_value_is_mapped_or_refused() {
    use crate::wire::translate::request::{FieldRule, INCLUDE_VALUES};
    let plain = responses_to_chat_request(&with(json!({})), &[], &|_| None, "up").unwrap();
    for (value, rule) in INCLUDE_VALUES {
        let request = with(json!({"include": [value]}));
        let result = responses_to_chat_request(&request, &[], &|_| None, "up");
        match rule {
            FieldRule::Refused(reason) => {
                let refused = result.expect_err(value);
                assert_eq!(refused.param.as_deref(), Some("include"), "{value}");
                assert!(
                    refused.message.contains(reason),
                    "{value}: {}",
                    refused.message
                );
            }
            _ => assert_ne!(result.expect(value), plain, "{value} asks chat for nothing"),
        }
    }
}
