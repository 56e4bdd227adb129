"""Function calling through the proxy: tool loops on Chat Completions (both upstreams) and on the
Responses API (native, and translated onto the chat-only upstream), streaming and not.

The mock calls a tool whose name the last user message mentions, answers `reply N: tool said
<output>` after a tool result, and rejects conversations the real API rejects (contracts,
section 1), so a loop only completes when the proxy forwards what the real API would accept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import openai
import pytest
from openai.types.chat import ChatCompletionMessage
from openai.types.responses import Response, ResponseFunctionToolCall
from pydantic import BaseModel, ConfigDict

from harness.pytest.calls import (
    EACH_CHAT_UPSTREAM,
    EACH_MODE,
    EACH_RESPONSES_UPSTREAM,
    NATIVE,
    TRANSLATED,
)


class GetWeather(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    unit: Literal["c", "f"]


class GetTime(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zone: str


ARGUMENT_MODELS: dict[str, type[BaseModel]] = {"get_weather": GetWeather, "get_time": GetTime}
SCHEMAS = {
    name: {**model.model_json_schema(), "additionalProperties": False}
    for name, model in ARGUMENT_MODELS.items()
}
# What the mock's schema rule generates for each (contracts, section 1).
EXPECTED_ARGUMENTS = {"get_weather": {"city": "city", "unit": "c"}, "get_time": {"zone": "zone"}}
TOOL_RESULT = "sunny 21"


def chat_tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": SCHEMAS[name], **extra}}


def responses_tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": SCHEMAS[name], **extra}


def check_arguments(name: str, arguments: str) -> None:
    parsed = ARGUMENT_MODELS[name].model_validate_json(arguments)
    assert parsed.model_dump() == EXPECTED_ARGUMENTS[name]


# --------------------------------------------------------------------------- chat completions


def chat_turn(
    client: openai.OpenAI, model: str, messages: list[dict[str, Any]], stream: bool, **options: Any
) -> tuple[ChatCompletionMessage, str]:
    """One completion, whole or through the SDK's streaming helper; the message and its
    finish_reason."""
    if stream:
        with client.chat.completions.stream(model=model, messages=messages, **options) as events:
            completion: Any = events.get_final_completion()
    else:
        completion = client.chat.completions.create(model=model, messages=messages, **options)
    [choice] = completion.choices
    return choice.message, choice.finish_reason


def assistant_turn(message: ChatCompletionMessage) -> dict[str, Any]:
    """The assistant message as a client sends it back."""
    turn: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls  # type: ignore[union-attr]
        ]
    return turn


@EACH_CHAT_UPSTREAM
@EACH_MODE
def test_chat_tool_loop(client: openai.OpenAI, seen, model: str, stream: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "call get_weather for Paris"}]
    tools = [chat_tool("get_weather"), chat_tool("get_time")]
    message, finish_reason = chat_turn(client, model, messages, stream, tools=tools)
    assert finish_reason == "tool_calls"
    assert message.content is None
    [call] = message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    check_arguments("get_weather", call.function.arguments)  # type: ignore[union-attr]

    messages += [
        assistant_turn(message),
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    answer, finish_reason = chat_turn(client, model, messages, stream, tools=tools)
    assert finish_reason == "stop"
    assert answer.content == f"reply 1: tool said {TOOL_RESULT}"
    assert not answer.tool_calls
    assert seen()[-1]["body"]["messages"] == messages


@EACH_CHAT_UPSTREAM
@EACH_MODE
def test_chat_parallel_calls_and_text_before_them(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "explain, then use get_time and get_weather"}
    ]
    tools = [chat_tool("get_weather"), chat_tool("get_time")]
    message, finish_reason = chat_turn(client, model, messages, stream, tools=tools)
    assert finish_reason == "tool_calls"
    assert message.content == "calling get_weather get_time"
    calls = message.tool_calls or []
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert len({call.id for call in calls}) == 2
    for call in calls:
        check_arguments(call.function.name, call.function.arguments)  # type: ignore[union-attr]

    messages += [
        assistant_turn(message),
        *(
            {"role": "tool", "tool_call_id": call.id, "content": f"done {n}"}
            for n, call in enumerate(calls)
        ),
    ]
    answer, _ = chat_turn(client, model, messages, stream, tools=tools)
    assert answer.content == "reply 1: tool said done 0 done 1"


def test_chat_parallel_tool_calls_false_makes_one_call(client: openai.OpenAI) -> None:
    message, _ = chat_turn(
        client,
        TRANSLATED,
        [{"role": "user", "content": "use get_weather and get_time"}],
        False,
        tools=[chat_tool("get_weather"), chat_tool("get_time")],
        parallel_tool_calls=False,
    )
    assert [call.function.name for call in message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]


# (tool_choice on chat, on Responses, last user text, the functions called)
TOOL_CHOICES = [
    pytest.param("none", "none", "use get_weather", [], id="none"),
    pytest.param("auto", "auto", "just talk", [], id="auto-without-a-name"),
    pytest.param("auto", "auto", "use get_time", ["get_time"], id="auto-with-a-name"),
    pytest.param("required", "required", "just talk", ["get_weather"], id="required"),
    pytest.param(
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "function", "name": "get_time"},
        "use get_weather",
        ["get_time"],
        id="named",
    ),
]


@pytest.mark.parametrize(("chat_choice", "responses_choice", "text", "called"), TOOL_CHOICES)
def test_tool_choice_forms_on_chat(
    client: openai.OpenAI, chat_choice: Any, responses_choice: Any, text: str, called: list[str]
) -> None:
    message, finish_reason = chat_turn(
        client,
        TRANSLATED,
        [{"role": "user", "content": text}],
        False,
        tools=[chat_tool("get_weather"), chat_tool("get_time")],
        tool_choice=chat_choice,
    )
    assert [call.function.name for call in message.tool_calls or []] == called  # type: ignore[union-attr]
    assert finish_reason == ("tool_calls" if called else "stop")
    assert message.content == (None if called else f"reply 1: {text}")


def test_an_unanswered_tool_message_is_the_upstreams_400(client: openai.OpenAI) -> None:
    """The proxy relays the upstream's verdict on a conversation the real API rejects."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=TRANSLATED,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nobody", "content": "orphan"},
            ],
        )
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert caught.value.body["param"]  # type: ignore[index]


# --------------------------------------------------------------------------- responses


def responses_turn(
    client: openai.OpenAI, model: str, stream: bool, **request: Any
) -> tuple[Response, list[Any]]:
    """One response, whole or through the SDK's streaming helper; the response and the stream's
    events (none when whole)."""
    if not stream:
        return client.responses.create(model=model, **request), []
    with client.responses.stream(model=model, **request) as events:
        seen_events = list(events)
        return events.get_final_response(), seen_events


def function_calls(response: Response) -> list[ResponseFunctionToolCall]:
    return [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]


def check_call_events(events: list[Any], response: Response) -> None:
    """Every function call of a streamed response has its `arguments.done` and `output_item.done`
    events, with the arguments the final response holds."""
    if not events:
        return
    for call in function_calls(response):
        [arguments_done] = [
            e
            for e in events
            if e.type == "response.function_call_arguments.done" and e.item_id == call.id
        ]
        assert arguments_done.arguments == call.arguments
        [item_done] = [
            e for e in events if e.type == "response.output_item.done" and e.item.id == call.id
        ]
        assert item_done.item.arguments == call.arguments
        assert item_done.item.call_id == call.call_id
        deltas = [
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta" and e.item_id == call.id
        ]
        assert "".join(deltas) == call.arguments


def call_weather(
    client: openai.OpenAI, model: str, stream: bool, text: str, *, after_text: bool = False
) -> Response:
    """The first turn of a loop: one call of get_weather (after the text `explain` asks for)."""
    first, events = responses_turn(
        client,
        model,
        stream,
        input=text,
        tools=[responses_tool("get_weather"), responses_tool("get_time")],
    )
    assert first.status == "completed"
    expected_items = ["message", "function_call"] if after_text else ["function_call"]
    assert [item.type for item in first.output] == expected_items
    [call] = function_calls(first)
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_")
    check_arguments("get_weather", call.arguments)
    check_call_events(events, first)
    return first


def output_as_input(response: Response) -> list[dict[str, Any]]:
    return [item.model_dump(exclude_none=True) for item in response.output]


def continue_with(client: openai.OpenAI, model: str, stream: bool, **request: Any) -> Response:
    answer, _ = responses_turn(
        client,
        model,
        stream,
        tools=[responses_tool("get_weather"), responses_tool("get_time")],
        **request,
    )
    assert answer.status == "completed"
    return answer


def tool_outputs(response: Response, outputs: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "function_call_output", "call_id": call.call_id, "output": output}
        for call, output in zip(function_calls(response), outputs, strict=True)
    ]


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_tool_loop_with_input_items(
    client: openai.OpenAI, seen, model: str, stream: bool
) -> None:
    question = "call get_weather for Paris"
    first = call_weather(client, model, stream, question)
    answer = continue_with(
        client,
        model,
        stream,
        input=[
            {"role": "user", "content": question},
            *output_as_input(first),
            *tool_outputs(first, [TOOL_RESULT]),
        ],
    )
    assert answer.output_text == f"reply 1: tool said {TOOL_RESULT}"
    if model == TRANSLATED:
        [call] = function_calls(first)
        assert seen()[-1]["body"]["messages"] == [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": call.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.call_id, "content": TOOL_RESULT},
        ]


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_tool_loop_with_previous_response_id(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    first = call_weather(client, model, stream, "call get_weather for Paris")
    answer = continue_with(
        client,
        model,
        stream,
        input=tool_outputs(first, [TOOL_RESULT]),
        previous_response_id=first.id,
    )
    assert answer.output_text == f"reply 1: tool said {TOOL_RESULT}"
    # The loop goes on: a second question on the same chain calls again.
    again = continue_with(
        client, model, stream, input="now get_time please", previous_response_id=answer.id
    )
    assert [call.name for call in function_calls(again)] == ["get_time"]


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_parallel_calls_after_text(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    first, events = responses_turn(
        client,
        model,
        stream,
        input="explain, then use get_time and get_weather",
        tools=[responses_tool("get_weather"), responses_tool("get_time")],
    )
    assert [item.type for item in first.output] == ["message", "function_call", "function_call"]
    assert first.output_text == "calling get_weather get_time"
    calls = function_calls(first)
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert len({call.call_id for call in calls}) == 2
    for call in calls:
        check_arguments(call.name, call.arguments)
    check_call_events(events, first)

    answer = continue_with(
        client,
        model,
        stream,
        input=tool_outputs(first, ["done 0", "done 1"]),
        previous_response_id=first.id,
    )
    assert answer.output_text == "reply 1: tool said done 0 done 1"


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_tool_loop_from_item_references(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    """SDKs that store responses send earlier output items back by reference."""
    question = "explain, then call get_weather"
    first = call_weather(client, model, stream, question, after_text=True)
    answer = continue_with(
        client,
        model,
        stream,
        input=[
            {"role": "user", "content": question},
            *({"type": "item_reference", "id": item.id} for item in first.output),
            *tool_outputs(first, [TOOL_RESULT]),
        ],
    )
    assert answer.output_text == f"reply 1: tool said {TOOL_RESULT}"


@EACH_RESPONSES_UPSTREAM
def test_an_unknown_item_reference_is_404(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(
            model=model,
            input=[
                {"role": "user", "content": "hi"},
                {"type": "item_reference", "id": "msg_neverminted"},
            ],
        )
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(("chat_choice", "responses_choice", "text", "called"), TOOL_CHOICES)
@EACH_RESPONSES_UPSTREAM
def test_tool_choice_forms_on_responses(
    client: openai.OpenAI,
    model: str,
    chat_choice: Any,
    responses_choice: Any,
    text: str,
    called: list[str],
) -> None:
    response, _ = responses_turn(
        client,
        model,
        False,
        input=text,
        tools=[responses_tool("get_weather"), responses_tool("get_time")],
        tool_choice=responses_choice,
    )
    assert [call.name for call in function_calls(response)] == called
    assert response.output_text == ("" if called else f"reply 1: {text}")


# (the tool's `strict` as sent on Responses, `strict` on the translated chat tool)
STRICT_CASES = [
    pytest.param({}, True, id="omitted-is-strict"),
    pytest.param({"strict": True}, True, id="true"),
    pytest.param({"strict": False}, False, id="false"),
]


@pytest.mark.parametrize(("sent", "forwarded"), STRICT_CASES)
def test_strict_follows_the_responses_default_when_translated(
    client: openai.OpenAI, seen, sent: dict[str, Any], forwarded: bool
) -> None:
    client.responses.create(
        model=TRANSLATED, input="use get_time", tools=[responses_tool("get_time", **sent)]
    )
    [tool] = seen()[-1]["body"]["tools"]
    assert tool["function"]["strict"] is forwarded


def test_native_upstream_gets_the_tools_as_sent(client: openai.OpenAI, seen) -> None:
    tools = [responses_tool("get_time"), responses_tool("get_weather", strict=False)]
    response = client.responses.create(
        model=NATIVE,
        input="use get_time",
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    body = seen()[-1]["body"]
    assert body["tools"] == tools
    assert body["parallel_tool_calls"] is False
    assert [tool.name for tool in response.tools] == ["get_time", "get_weather"]  # type: ignore[union-attr]
    assert response.parallel_tool_calls is False


# --------------------------------------------------------------------------- helpers only


def test_a_tool_loop_driven_only_by_the_sdk_stream_helpers(client: openai.OpenAI) -> None:
    """Both streaming helpers, accumulating calls and answers on their own, across both APIs."""
    run_tool = {"get_weather": lambda arguments: f"sunny in {json.loads(arguments)['city']}"}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "get_weather please"}]
    with client.chat.completions.stream(
        model=TRANSLATED,
        messages=messages,
        tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")],
    ) as stream:
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    [call] = message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)  # type: ignore[union-attr]

    tool_messages = [
        {
            "role": "tool",
            "tool_call_id": c.id,
            "content": run_tool[c.function.name](c.function.arguments),
        }  # type: ignore[union-attr]
        for c in message.tool_calls or []
    ]
    with client.chat.completions.stream(
        model=TRANSLATED, messages=[*messages, assistant_turn(message), *tool_messages]
    ) as stream:
        chat_answer = stream.get_final_completion().choices[0].message.content

    responses_answer = drive_responses_loop(client, TRANSLATED, "get_weather please", run_tool)
    assert chat_answer == responses_answer == "reply 1: tool said sunny in city"


def drive_responses_loop(
    client: openai.OpenAI, model: str, text: str, run_tool: dict[str, Callable[[str], str]]
) -> str:
    request: dict[str, Any] = {"input": text}
    for _ in range(3):
        with client.responses.stream(
            model=model, tools=[responses_tool("get_weather")], **request
        ) as stream:
            response = stream.get_final_response()
        calls = function_calls(response)
        if not calls:
            return response.output_text
        request = {
            "previous_response_id": response.id,
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": c.call_id,
                    "output": run_tool[c.name](c.arguments),
                }
                for c in calls
            ],
        }
    raise AssertionError("the tool loop did not end in three turns")
