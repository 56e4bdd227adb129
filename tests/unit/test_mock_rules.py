"""The mock's answer rules and its rejection catalogue (docs/contracts.md section 1, "Answer
rules" and "Rejections"), as tables run against the mock's own app over HTTP: one case per
answer rule on both APIs, and one case per rejection of `validation.REJECTIONS`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.mock.schema import instance
from harness.mock.validation import REJECTIONS

CHAT, RESPONSES = "v1/chat/completions", "v1/responses"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"], "type": "string"}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}}}
WEATHER_ARGS = json.dumps({"city": "city", "unit": "c"})
TIME_ARGS = json.dumps({"zone": "zone"})
ANSWER = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}}}


def chat_tools(*names: str) -> list[dict[str, Any]]:
    schemas = {"get_weather": WEATHER, "get_time": TIME}
    return [
        {"type": "function", "function": {"name": name, "parameters": schemas[name]}}
        for name in names
    ]


def responses_tools(*names: str) -> list[dict[str, Any]]:
    return [{"type": "function", **tool["function"]} for tool in chat_tools(*names)]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chat_summary(body: dict[str, Any]) -> dict[str, Any]:
    [choice] = body["choices"]
    message = choice["message"]
    calls = [
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []
    ]
    return {
        "text": message["content"],
        "refusal": message["refusal"],
        "calls": calls,
        "end": choice["finish_reason"],
    }


def responses_summary(body: dict[str, Any]) -> dict[str, Any]:
    text = refusal = None
    calls = []
    for item in body["output"]:
        if item["type"] == "function_call":
            assert item["id"].startswith("fc_") and item["call_id"].startswith("call_")
            calls.append((item["name"], item["arguments"]))
        else:
            [part] = item["content"]
            if part["type"] == "refusal":
                refusal = part["refusal"]
            else:
                text = part["text"]
    return {"text": text, "refusal": refusal, "calls": calls, "end": body["status"]}


def both(text: str | None, calls: list[tuple[str, str]], refusal: str | None = None) -> Any:
    """Expected (chat summary, Responses summary) for an answer."""
    chat_end = "tool_calls" if calls else "stop"
    return (
        {"text": text, "refusal": refusal, "calls": calls, "end": chat_end},
        {"text": text, "refusal": refusal, "calls": calls, "end": "completed"},
    )


# (id, chat body fields, Responses body fields, expected summaries)
ANSWER_RULES = [
    pytest.param(
        {"messages": [user("hi there")]},
        {"input": "hi there"},
        both("reply 1: hi there", []),
        id="5-text",
    ),
    pytest.param(
        {"messages": [user("use get_time")], "tools": chat_tools("get_weather", "get_time")},
        {"input": "use get_time", "tools": responses_tools("get_weather", "get_time")},
        both(None, [("get_time", TIME_ARGS)]),
        id="3-auto-names-a-tool",
    ),
    pytest.param(
        {"messages": [user("just talk")], "tools": chat_tools("get_weather")},
        {"input": "just talk", "tools": responses_tools("get_weather")},
        both("reply 1: just talk", []),
        id="3-auto-names-none",
    ),
    pytest.param(
        {"messages": [user("get_time")], "tools": chat_tools("get_time"), "tool_choice": "none"},
        {"input": "get_time", "tools": responses_tools("get_time"), "tool_choice": "none"},
        both("reply 1: get_time", []),
        id="3-none",
    ),
    pytest.param(
        {
            "messages": [user("talk")],
            "tools": chat_tools("get_weather", "get_time"),
            "tool_choice": "required",
        },
        {
            "input": "talk",
            "tools": responses_tools("get_weather", "get_time"),
            "tool_choice": "required",
        },
        both(None, [("get_weather", WEATHER_ARGS)]),
        id="3-required-calls-the-first",
    ),
    pytest.param(
        {
            "messages": [user("get_weather")],
            "tools": chat_tools("get_weather", "get_time"),
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
        {
            "input": "get_weather",
            "tools": responses_tools("get_weather", "get_time"),
            "tool_choice": {"type": "function", "name": "get_time"},
        },
        both(None, [("get_time", TIME_ARGS)]),
        id="3-named",
    ),
    pytest.param(
        {
            "messages": [user("get_time and get_weather")],
            "tools": chat_tools("get_weather", "get_time"),
        },
        {"input": "get_time and get_weather", "tools": responses_tools("get_weather", "get_time")},
        both(None, [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)]),
        id="3-parallel-in-tools-order",
    ),
    pytest.param(
        {
            "messages": [user("get_time and get_weather")],
            "tools": chat_tools("get_weather", "get_time"),
            "parallel_tool_calls": False,
        },
        {
            "input": "get_time and get_weather",
            "tools": responses_tools("get_weather", "get_time"),
            "parallel_tool_calls": False,
        },
        both(None, [("get_weather", WEATHER_ARGS)]),
        id="3-parallel-false",
    ),
    pytest.param(
        {"messages": [user("Explain get_time")], "tools": chat_tools("get_time")},
        {"input": "Explain get_time", "tools": responses_tools("get_time")},
        both("calling get_time", [("get_time", TIME_ARGS)]),
        id="3-explain-text-before-calls",
    ),
    pytest.param(
        {"messages": [user("I REFUSE get_time")], "tools": chat_tools("get_time")},
        {"input": "I REFUSE get_time", "tools": responses_tools("get_time")},
        both(None, [], refusal="I refuse: I REFUSE get_time"),
        id="2-refusal-beats-tools",
    ),
    pytest.param(
        {"messages": [user("refused is no refusal")]},
        {"input": "refused is no refusal"},
        both("reply 1: refused is no refusal", []),
        id="2-whole-word-only",
    ),
    pytest.param(
        {
            "messages": [
                user("q"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "one"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "two"}],
                },
            ],
            "tools": chat_tools("get_time"),
        },
        {
            "input": [
                user("q refuse get_time"),
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_time",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "one two"},
            ],
            "tools": responses_tools("get_time"),
        },
        both("reply 1: tool said one two", []),
        id="1-after-tool-results",
    ),
    pytest.param(
        {
            "messages": [user("x")],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": ANSWER, "strict": True},
            },
        },
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": ANSWER}}},
        both(json.dumps({"answer": "answer", "n": 1}), []),
        id="4-json-schema",
    ),
    pytest.param(
        {"messages": [user("x y")], "response_format": {"type": "json_object"}},
        {"input": "x y", "text": {"format": {"type": "json_object"}}},
        both(json.dumps({"reply": "reply 1: x y"}), []),
        id="4-json-object",
    ),
]


@pytest.mark.parametrize(("chat", "responses", "expected"), ANSWER_RULES)
def test_answer_rules_on_both_apis(http, chat, responses, expected):
    reply = http.post(f"/rules/{CHAT}", json={"model": "m", **chat})
    assert reply.status_code == 200, reply.text
    assert chat_summary(reply.json()) == expected[0]
    reply = http.post(f"/rules/{RESPONSES}", json={"model": "m", **responses})
    assert reply.status_code == 200, reply.text
    assert responses_summary(reply.json()) == expected[1]


def test_tokens_count_tool_outputs_and_arguments(http):
    body = {
        "model": "m",
        "messages": [
            user("a"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"zone": "z"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "three words here"},
        ],
        "tools": chat_tools("get_time"),
    }
    usage = http.post(f"/rules/{CHAT}", json=body).json()["usage"]
    # a (1) + arguments (2) + output (3); "reply 1: tool said three words here" (7)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (6, 7)
    body = {"model": "m", "input": "get_time", "tools": responses_tools("get_time")}
    usage = http.post(f"/rules/{RESPONSES}", json=body).json()["usage"]
    assert usage["output_tokens"] == len(TIME_ARGS.split())


def test_max_tokens_cuts_text_but_never_calls(http):
    body = {
        "model": "m",
        "messages": [user("explain get_time")],
        "max_tokens": 1,
        "tools": chat_tools("get_time"),
    }
    summary = chat_summary(http.post(f"/rules/{CHAT}", json=body).json())
    assert summary == {
        "text": "calling",
        "refusal": None,
        "calls": [("get_time", TIME_ARGS)],
        "end": "tool_calls",
    }
    body = {
        "model": "m",
        "input": "x",
        "max_output_tokens": 2,
        "text": {"format": {"type": "json_object"}},
    }
    response = http.post(f"/rules/{RESPONSES}", json=body).json()
    assert responses_summary(response)["text"] == '{"reply": "reply'
    assert response["status"] == "incomplete"


def test_responses_echo_tools_choice_parallel_text_and_metadata(http):
    body = {
        "model": "m",
        "input": "x",
        "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "metadata": {"k": "v"},
    }
    response = http.post(f"/rules/{RESPONSES}", json=body).json()
    assert response["tools"] == [
        {"type": "function", "name": "f", "description": None, "parameters": None, "strict": True},
        {"type": "web_search"},
    ]
    assert response["tool_choice"] == "required"
    assert response["parallel_tool_calls"] is False
    assert response["text"] == {"format": {"type": "json_object"}, "verbosity": "low"}
    assert response["metadata"] == {"k": "v"}
    plain = http.post(f"/rules/{RESPONSES}", json={"model": "m", "input": "x"}).json()
    assert (plain["tools"], plain["tool_choice"], plain["parallel_tool_calls"]) == (
        [],
        "auto",
        True,
    )
    assert plain["text"] == {"format": {"type": "text"}}


def test_a_later_output_answers_a_call_of_an_earlier_response(http):
    tools = responses_tools("get_time")
    first = http.post(
        f"/rules/{RESPONSES}", json={"model": "m", "input": "get_time", "tools": tools}
    ).json()
    [call] = first["output"]
    answer = http.post(
        f"/rules/{RESPONSES}",
        json={
            "model": "m",
            "previous_response_id": first["id"],
            "tools": tools,
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "noon"}
            ],
        },
    ).json()
    assert answer["output"][0]["content"][0]["text"] == "reply 1: tool said noon"
    # The whole chain counts: "get_time" (1) + arguments (2) + "noon" (1).
    assert answer["usage"]["input_tokens"] == 4


def test_item_references_resolve_to_the_items_the_mock_produced(http):
    tools = responses_tools("get_time")
    first = http.post(
        f"/rules/{RESPONSES}", json={"model": "m", "input": "explain get_time", "tools": tools}
    ).json()
    message, call = first["output"]
    answer = http.post(
        f"/rules/{RESPONSES}",
        json={
            "model": "m",
            "tools": tools,
            "input": [
                user("explain get_time"),
                {"type": "item_reference", "id": message["id"]},
                {"id": call["id"], "type": "item_reference"},
                {"type": "function_call_output", "call_id": call["call_id"], "output": "noon"},
            ],
        },
    ).json()
    assert answer["output"][0]["content"][0]["text"] == "reply 1: tool said noon"
    # Another upstream never produced those items.
    other = http.post(
        f"/rules-other/{RESPONSES}",
        json={"model": "m", "input": [{"type": "item_reference", "id": message["id"]}]},
    )
    assert other.status_code == 404


# --------------------------------------------------------------------------- accepted


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
# Requests the real API accepts, which the mock must accept too.
ACCEPTED = [
    pytest.param(
        CHAT,
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "developer", "content": "d"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "t"},
                        {"type": "image_url", "image_url": {"url": "https://x"}},
                    ],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
                {"role": "function", "name": "f", "content": "legacy"},
                user("u"),
            ]
        },
        id="chat-every-role-and-content-parts",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                user("q"),
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "r"},
                {"role": "assistant", "content": "done", "refusal": None},
                user("more"),
            ],
            "tools": chat_tools("get_time"),
        },
        id="chat-answered-calls-then-more",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [user("q")],
            "tools": [
                {"type": "function", "function": {"name": "no_params"}},
                {"type": "function", "function": {"name": "empty", "parameters": {}}},
                {"type": "custom", "custom": {"name": "free_text"}},
            ],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "empty"}}],
                },
            },
        },
        id="chat-tools-without-parameters-custom-allowed-tools",
    ),
    pytest.param(
        CHAT, {"messages": [user("q")], "response_format": {"type": "text"}}, id="chat-text-format"
    ),
    pytest.param(
        RESPONSES,
        {
            "input": [
                {"role": "user", "content": "easy message without type"},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "s"}],
                },
                {"type": "message", "role": "developer", "content": "d"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "a", "annotations": []}],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "get_time", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_text", "text": "out"}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "u"},
                        {"type": "input_image", "image_url": "https://x"},
                    ],
                },
            ],
            "tools": [
                *responses_tools("get_time"),
                {"type": "web_search"},
                {"type": "custom", "name": "free"},
            ],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_time"}],
            },
        },
        id="responses-every-item-kind-and-builtin-tools",
    ),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED)
def test_what_the_real_api_accepts_is_accepted(http, path, body):
    reply = http.post(f"/rules/{path}", json={"model": "m", **body})
    assert reply.status_code == 200, reply.text


# --------------------------------------------------------------------------- rejections


def fn(name: str, parameters: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name}
    if parameters is not None:
        spec["parameters"] = parameters
    return {"type": "function", "function": spec}


UNANSWERED = [user("q"), {"role": "assistant", "content": None, "tool_calls": [CALL]}, user("r")]
# rejection key -> (path, body fields, param the error names)
REJECTION_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "chat.message_not_object": (CHAT, {"messages": [user("a"), "b"]}, "messages.[1]"),
    "chat.unknown_role": (
        CHAT,
        {"messages": [{"role": "bot", "content": "x"}]},
        "messages.[0].role",
    ),
    "chat.tool_call_without_id": (
        CHAT,
        {"messages": [user("q"), {"role": "assistant", "tool_calls": [{"type": "function"}]}]},
        "messages.[1].tool_calls.[0].id",
    ),
    "chat.tool_without_call": (
        CHAT,
        {"messages": [user("q"), {"role": "tool", "tool_call_id": "call_nobody", "content": "x"}]},
        "messages.[1].role",
    ),
    "chat.unanswered_tool_calls": (CHAT, {"messages": UNANSWERED}, "messages"),
    "chat.tool_choice_without_tools": (
        CHAT,
        {"messages": [user("q")], "tool_choice": "auto"},
        "tool_choice",
    ),
    "chat.response_format_type": (
        CHAT,
        {"messages": [user("q")], "response_format": {"type": "yaml"}},
        "response_format.type",
    ),
    "chat.json_schema_missing": (
        CHAT,
        {"messages": [user("q")], "response_format": {"type": "json_schema"}},
        "response_format.json_schema",
    ),
    "chat.json_schema_name": (
        CHAT,
        {
            "messages": [user("q")],
            "response_format": {"type": "json_schema", "json_schema": {"schema": ANSWER}},
        },
        "response_format.json_schema.name",
    ),
    "chat.logprobs_type": (CHAT, {"messages": [user("q")], "logprobs": "yes"}, "logprobs"),
    "chat.top_logprobs_without_logprobs": (
        CHAT,
        {"messages": [user("q")], "top_logprobs": 2},
        "top_logprobs",
    ),
    "top_logprobs.type": (RESPONSES, {"input": "x", "top_logprobs": "2"}, "top_logprobs"),
    "top_logprobs.above_max": (
        CHAT,
        {"messages": [user("q")], "logprobs": True, "top_logprobs": 21},
        "top_logprobs",
    ),
    "top_logprobs.below_min": (RESPONSES, {"input": "x", "top_logprobs": -1}, "top_logprobs"),
    "responses.include_type": (
        RESPONSES,
        {"input": "x", "include": "message.output_text.logprobs"},
        "include",
    ),
    "responses.include_value": (
        RESPONSES,
        {"input": "x", "include": ["message.output_text.logprobs", "everything"]},
        "include[1]",
    ),
    "responses.item_not_object": (RESPONSES, {"input": ["x"]}, "input[0]"),
    "responses.unknown_item_type": (RESPONSES, {"input": [{"type": "telepathy"}]}, "input[0]"),
    "responses.unknown_role": (
        RESPONSES,
        {"input": [{"role": "tool", "content": "x"}]},
        "input[0].role",
    ),
    "responses.item_field_missing": (
        RESPONSES,
        {"input": [{"type": "function_call_output", "output": "x"}]},
        "input[0].call_id",
    ),
    "responses.item_not_found": (
        RESPONSES,
        {"input": [{"type": "item_reference", "id": "msg_x"}]},
        "input",
    ),
    "responses.unknown_call_output": (
        RESPONSES,
        {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "x"}]},
        "input",
    ),
    "responses.unanswered_call": (
        RESPONSES,
        {
            "input": [
                {"type": "function_call", "call_id": "call_x", "name": "f", "arguments": "{}"},
                user("next"),
            ]
        },
        "input",
    ),
    "responses.format_type": (
        RESPONSES,
        {"input": "x", "text": {"format": {"type": "yaml"}}},
        "text.format.type",
    ),
    "responses.format_name": (
        RESPONSES,
        {"input": "x", "text": {"format": {"type": "json_schema", "schema": ANSWER}}},
        "text.format.name",
    ),
    "responses.format_schema": (
        RESPONSES,
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}},
        "text.format.schema",
    ),
    "tools.not_a_list": (RESPONSES, {"input": "x", "tools": {"type": "function"}}, "tools"),
    "tools.not_object": (CHAT, {"messages": [user("q")], "tools": ["f"]}, "tools[0]"),
    "tools.unknown_type": (
        CHAT,
        {"messages": [user("q")], "tools": [{"type": "web_search"}]},
        "tools[0].type",
    ),
    "tools.missing_name": (
        CHAT,
        {
            "messages": [user("q")],
            "tools": [{"type": "function", "function": {"parameters": TIME}}],
        },
        "tools[0].function.name",
    ),
    "tools.invalid_name": (
        RESPONSES,
        {"input": "x", "tools": [{"type": "function", "name": "has space"}]},
        "tools[0].name",
    ),
    "tools.invalid_parameters": (
        CHAT,
        {"messages": [user("q")], "tools": [fn("f", {"type": "string"})]},
        "tools[0].function.parameters",
    ),
    "tools.duplicate_name": (CHAT, {"messages": [user("q")], "tools": [fn("f"), fn("f")]}, "tools"),
    "tool_choice.invalid": (RESPONSES, {"input": "x", "tool_choice": "sometimes"}, "tool_choice"),
    "tool_choice.unknown_function": (
        RESPONSES,
        {
            "input": "x",
            "tools": responses_tools("get_time"),
            "tool_choice": {"type": "function", "name": "get_weather"},
        },
        "tool_choice",
    ),
}


def test_every_rejection_rule_has_a_case():
    assert set(REJECTION_CASES) == set(REJECTIONS)


@pytest.mark.parametrize("key", sorted(REJECTION_CASES))
def test_rejection_catalogue(http, key):
    path, fields, param = REJECTION_CASES[key]
    reply = http.post(f"/rules/{path}", json={"model": "m", **fields})
    rule = REJECTIONS[key]
    assert reply.status_code == rule.status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        rule.code,
    )
    assert error["message"]


def test_rejections_name_what_is_wrong(http):
    error = http.post(f"/rules/{CHAT}", json={"model": "m", "messages": UNANSWERED}).json()["error"]
    assert error["message"].endswith("did not have response messages: call_1")
    body = {
        "model": "m",
        "input": "x",
        "tools": responses_tools("get_time"),
        "tool_choice": {"type": "function", "name": "nope"},
    }
    error = http.post(f"/rules/{RESPONSES}", json=body).json()["error"]
    assert "'nope'" in error["message"]


# --------------------------------------------------------------------------- the schema rule


SCHEMA_RULE = [
    pytest.param({"const": 3, "type": "integer"}, 3, id="const"),
    pytest.param({"enum": ["b", "a"]}, "b", id="enum-first"),
    pytest.param({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 1, id="anyOf-non-null"),
    pytest.param({"oneOf": [{"type": "null"}]}, None, id="oneOf-only-null"),
    pytest.param({"type": ["null", "number"]}, 1.5, id="type-list"),
    pytest.param({"type": "integer", "minimum": 7}, 7, id="integer-minimum"),
    pytest.param({"type": "number", "minimum": 0.5}, 0.5, id="number-minimum"),
    pytest.param({"type": "boolean"}, True, id="boolean"),
    pytest.param({"type": "null"}, None, id="null"),
    pytest.param({"type": "string"}, "text", id="top-level-string"),
    pytest.param({"type": "string", "minLength": 6}, "textxx", id="min-length"),
    pytest.param(
        {"type": "array", "items": {"type": "string"}, "minItems": 2},
        ["text", "text"],
        id="array-min-items",
    ),
    pytest.param({"type": "array", "items": {"type": "integer"}}, [1], id="array-one"),
    pytest.param({}, "text", id="no-type"),
    pytest.param(
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "mail": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"},
                "key": {"type": "string", "format": "uuid"},
                "loose": {},
                "opt": {"type": "string"},
            },
            "required": ["when"],
        },
        {
            "when": "2024-01-01T00:00:00Z",
            "day": "2024-01-01",
            "mail": "user@example.com",
            "site": "https://example.com",
            "key": "00000000-0000-4000-8000-000000000000",
            "loose": "loose",
            "opt": "opt",
        },
        id="object-all-properties-and-formats",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/definitions/B"}},
            "$defs": {"A": {"type": "integer"}},
            "definitions": {"B": {"type": "string"}},
        },
        {"a": 1, "b": "b"},
        id="refs",
    ),
    pytest.param({"$ref": "#"}, "text", id="unresolvable-ref"),
]


@pytest.mark.parametrize(("schema", "expected"), SCHEMA_RULE)
def test_schema_rule(schema, expected):
    assert instance(schema) == expected


def test_recursive_schema_ends():
    node = {
        "type": "object",
        "properties": {"next": {"$ref": "#/$defs/N"}},
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
    }
    value = instance(node)
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and depth > 5
