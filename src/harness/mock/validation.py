"""What the mock rejects, as the real API does (contract section 1, "Rejections"), and the
reading of a valid request into the conversation and options the answer rule takes.

Every rejection is one entry of `REJECTIONS` (status, param, message, code, with `{fields}`
filled in where it is raised); the readers below raise them with `reject(key, **fields)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.mock import formats
from harness.mock.content import (
    MAX_TOP_LOGPROBS,
    Entry,
    Function,
    Message,
    Options,
    ToolCall,
    ToolResult,
    content_text,
    reasoning_field,
)
from harness.mock.schema import object_schema_problem


class Rejected(Exception):
    """The request is answered with an OpenAI error (4xx) instead of a reply."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.body = formats.error_body(message, "invalid_request_error", param=param, code=code)


@dataclass(frozen=True)
class Rejection:
    status: int
    param: str
    message: str
    code: str | None = None


CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
RESPONSES_ROLES = ("user", "assistant", "system", "developer")
# Input item types the Responses API takes besides messages and function calls: the mock
# accepts them and they carry no text (item_reference is resolved, see `responses_input`).
OTHER_ITEM_TYPES = frozenset(
    {
        "reasoning",
        "file_search_call",
        "web_search_call",
        "computer_call",
        "computer_call_output",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "custom_tool_call",
        "custom_tool_call_output",
        "compaction",
    }
)
ITEM_TYPES = ("message", "function_call", "function_call_output", "item_reference")
CHAT_TOOL_TYPES = ("function", "custom")
# Built-in tools of the Responses API: accepted and echoed, never called by the mock.
RESPONSES_TOOL_TYPES = (
    "function",
    "custom",
    "file_search",
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
    "computer_use_preview",
    "computer",
    "mcp",
    "code_interpreter",
    "image_generation",
    "local_shell",
    "shell",
    "apply_patch",
)
CHOICE_MODES = ("none", "auto", "required")
# tool_choice objects naming a kind of built-in tool (Responses), accepted and echoed.
BUILTIN_CHOICES = frozenset(RESPONSES_TOOL_TYPES) - {"function", "custom"} | {"mcp"}
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
FORMAT_TYPES = ("text", "json_object", "json_schema")
# What a Responses request may `include`; the mock produces the text's logprobs, and takes the
# rest (outputs of built-in tools it never calls, encrypted reasoning it has none of).
OUTPUT_TEXT_LOGPROBS = "message.output_text.logprobs"
INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    OUTPUT_TEXT_LOGPROBS,
)


def _supported(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


# The rejection catalogue; docs/contracts.md section 1 has it as a table.
REJECTIONS: dict[str, Rejection] = {
    # Chat Completions: the conversation.
    "chat.message_not_object": Rejection(
        400,
        "messages.[{i}]",
        "Invalid type for 'messages.[{i}]': expected an object, but got {got} instead.",
        "invalid_type",
    ),
    "chat.unknown_role": Rejection(
        400,
        "messages.[{i}].role",
        f"Invalid value: '{{role}}'. Supported values are: {_supported(CHAT_ROLES)}.",
        "invalid_value",
    ),
    "chat.tool_call_without_id": Rejection(
        400,
        "messages.[{i}].tool_calls.[{j}].id",
        "Missing required parameter: 'messages.[{i}].tool_calls.[{j}].id'.",
        "missing_required_parameter",
    ),
    "chat.tool_without_call": Rejection(
        400,
        "messages.[{i}].role",
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
        "message with 'tool_calls'.",
    ),
    "chat.unanswered_tool_calls": Rejection(
        400,
        "messages",
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        "{ids}",
    ),
    # Chat Completions: tools, tool_choice, response_format.
    "chat.tool_choice_without_tools": Rejection(
        400,
        "tool_choice",
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
    ),
    "chat.response_format_type": Rejection(
        400,
        "response_format.type",
        f"Invalid value: '{{got}}'. Supported values are: {_supported(FORMAT_TYPES)}.",
        "invalid_value",
    ),
    "chat.json_schema_missing": Rejection(
        400,
        "response_format.json_schema",
        "Missing required parameter: 'response_format.json_schema'.",
        "missing_required_parameter",
    ),
    "chat.json_schema_name": Rejection(
        400,
        "response_format.json_schema.name",
        "Missing required parameter: 'response_format.json_schema.name'.",
        "missing_required_parameter",
    ),
    "chat.logprobs_type": Rejection(
        400,
        "logprobs",
        "Invalid type for 'logprobs': expected a boolean, but got {got} instead.",
        "invalid_type",
    ),
    "chat.top_logprobs_without_logprobs": Rejection(
        400,
        "top_logprobs",
        "Invalid value for 'top_logprobs': 'logprobs' must be set to true if 'top_logprobs' is "
        "used.",
    ),
    # Both APIs: how many alternatives each token's logprob comes with.
    "top_logprobs.type": Rejection(
        400,
        "top_logprobs",
        "Invalid type for 'top_logprobs': expected an integer, but got {got} instead.",
        "invalid_type",
    ),
    "top_logprobs.above_max": Rejection(
        400,
        "top_logprobs",
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= "
        f"{MAX_TOP_LOGPROBS}, but got {{got}} instead.",
        "integer_above_max_value",
    ),
    "top_logprobs.below_min": Rejection(
        400,
        "top_logprobs",
        "Invalid 'top_logprobs': integer below minimum value. Expected a value >= 0, but got "
        "{got} instead.",
        "integer_below_min_value",
    ),
    # Responses: include.
    "responses.include_type": Rejection(
        400,
        "include",
        "Invalid type for 'include': expected an array, but got {got} instead.",
        "invalid_type",
    ),
    "responses.include_value": Rejection(
        400,
        "include[{i}]",
        f"Invalid value: '{{got}}'. Supported values are: {_supported(INCLUDABLE)}.",
        "invalid_value",
    ),
    # Responses: the input items.
    "responses.item_not_object": Rejection(
        400,
        "input[{i}]",
        "Invalid type for 'input[{i}]': expected an object, but got {got} instead.",
        "invalid_type",
    ),
    "responses.unknown_item_type": Rejection(
        400,
        "input[{i}]",
        "Invalid value: '{got}'. Supported values are: "
        f"{_supported([*ITEM_TYPES, 'reasoning', '...'])}.",
        "invalid_value",
    ),
    "responses.unknown_role": Rejection(
        400,
        "input[{i}].role",
        f"Invalid value: '{{role}}'. Supported values are: {_supported(RESPONSES_ROLES)}.",
        "invalid_value",
    ),
    "responses.item_field_missing": Rejection(
        400,
        "input[{i}].{field}",
        "Missing required parameter: 'input[{i}].{field}'.",
        "missing_required_parameter",
    ),
    "responses.item_not_found": Rejection(404, "input", "Item with id '{id}' not found."),
    "responses.unknown_call_output": Rejection(
        400, "input", "No tool call found for function call output with call_id {id}."
    ),
    "responses.unanswered_call": Rejection(
        400, "input", "No tool output found for function call {id}."
    ),
    # Responses: text.format.
    "responses.format_type": Rejection(
        400,
        "text.format.type",
        f"Invalid value: '{{got}}'. Supported values are: {_supported(FORMAT_TYPES)}.",
        "invalid_value",
    ),
    "responses.format_name": Rejection(
        400,
        "text.format.name",
        "Missing required parameter: 'text.format.name'.",
        "missing_required_parameter",
    ),
    "responses.format_schema": Rejection(
        400,
        "text.format.schema",
        "Missing required parameter: 'text.format.schema'.",
        "missing_required_parameter",
    ),
    # Both APIs ({fn} is ".function" on chat, "" on Responses, whose tools are flat).
    "tools.not_a_list": Rejection(
        400,
        "tools",
        "Invalid type for 'tools': expected an array, but got {got} instead.",
        "invalid_type",
    ),
    "tools.not_object": Rejection(
        400,
        "tools[{i}]",
        "Invalid type for 'tools[{i}]': expected an object, but got {got} instead.",
        "invalid_type",
    ),
    "tools.unknown_type": Rejection(
        400,
        "tools[{i}].type",
        "Invalid value: '{got}'. Supported values are: {supported}.",
        "invalid_value",
    ),
    "tools.missing_name": Rejection(
        400,
        "tools[{i}]{fn}.name",
        "Missing required parameter: 'tools[{i}]{fn}.name'.",
        "missing_required_parameter",
    ),
    "tools.invalid_name": Rejection(
        400,
        "tools[{i}]{fn}.name",
        "Invalid 'tools[{i}]{fn}.name': string does not match pattern. Expected a string that "
        "matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.",
        "invalid_value",
    ),
    "tools.invalid_parameters": Rejection(
        400,
        "tools[{i}]{fn}.parameters",
        "Invalid schema for function '{name}': {problem}.",
        "invalid_function_parameters",
    ),
    "tools.duplicate_name": Rejection(
        400, "tools", "Duplicate function names are not allowed: '{name}'.", "invalid_value"
    ),
    "tool_choice.invalid": Rejection(
        400,
        "tool_choice",
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or an object "
        "naming a tool.",
        "invalid_value",
    ),
    "tool_choice.unknown_function": Rejection(
        400,
        "tool_choice",
        "Invalid value for 'tool_choice': 'tool_choice' references '{name}' but it is not in "
        "the list of tools.",
    ),
}


def reject(key: str, **fields: Any) -> Rejected:
    """The rejection `key` of the catalogue, with its fields filled in (raise it)."""
    rule = REJECTIONS[key]
    return Rejected(
        rule.status,
        rule.message.format(**fields),
        param=rule.param.format(**fields),
        code=rule.code,
    )


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), "a value")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    """The tools of a request: its function tools (the ones the mock calls) and, for the
    Responses echo, every tool as the response object shows it."""

    functions: tuple[Function, ...]
    echoed: list[Any]
    custom_names: frozenset[str] = frozenset()


def read_tools(value: Any, chat: bool) -> Tools:
    if value is None:
        return Tools((), [])
    if not isinstance(value, list):
        raise reject("tools.not_a_list", got=_type_name(value))
    fn = ".function" if chat else ""
    supported = CHAT_TOOL_TYPES if chat else RESPONSES_TOOL_TYPES
    functions: list[Function] = []
    echoed: list[Any] = []
    names: set[str] = set()
    custom: set[str] = set()
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise reject("tools.not_object", i=i, got=_type_name(tool))
        kind = tool.get("type")
        if not isinstance(kind, str) or kind not in supported:
            raise reject(
                "tools.unknown_type", i=i, got=_text(kind), supported=_supported(supported)
            )
        echoed.append(tool)
        if kind not in ("function", "custom"):
            continue
        spec = tool.get(kind) if chat else tool
        spec = spec if isinstance(spec, dict) else {}
        name = spec.get("name")
        where = f".{kind}" if chat else fn
        if name is None or name == "":
            raise reject("tools.missing_name", i=i, fn=where)
        if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
            raise reject("tools.invalid_name", i=i, fn=where)
        if name in names:
            raise reject("tools.duplicate_name", name=name)
        names.add(name)
        if kind == "custom":
            custom.add(name)
            continue
        parameters = spec.get("parameters")
        problem = object_schema_problem(parameters)
        if problem is not None:
            raise reject("tools.invalid_parameters", i=i, fn=fn, name=name, problem=problem)
        functions.append(Function(name, parameters))
        if not chat:
            strict = tool.get("strict")
            echoed[-1] = {
                **tool,
                "description": tool.get("description"),
                "parameters": parameters,
                "strict": strict if isinstance(strict, bool) else True,
            }
    return Tools(tuple(functions), echoed, frozenset(custom))


@dataclass(frozen=True)
class Choice:
    mode: str
    forced: str | None
    functions: tuple[Function, ...]


def read_tool_choice(value: Any, tools: Tools, chat: bool) -> Choice:
    """tool_choice: a mode, a named function, or (allowed_tools) a mode over some of them."""
    functions = tools.functions
    if value is None:
        return Choice("auto", None, functions)
    if isinstance(value, str):
        if value not in CHOICE_MODES:
            raise reject("tool_choice.invalid")
        return Choice(value, None, functions)
    if not isinstance(value, dict):
        raise reject("tool_choice.invalid")
    kind = value.get("type")
    if kind in ("function", "custom"):
        spec = value.get(kind) if chat else value
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            raise reject("tool_choice.invalid")
        known = {f.name for f in functions} if kind == "function" else tools.custom_names
        if name not in known:
            raise reject("tool_choice.unknown_function", name=name)
        if kind == "custom":
            return Choice("none", None, functions)
        return Choice("required", name, functions)
    if kind == "allowed_tools":
        spec = value.get("allowed_tools") if chat else value
        spec = spec if isinstance(spec, dict) else {}
        mode, allowed = spec.get("mode"), spec.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise reject("tool_choice.invalid")
        listed = {
            (each.get("function") or {}).get("name") if chat else each.get("name")
            for each in allowed
            if isinstance(each, dict)
        }
        return Choice(mode, None, tuple(f for f in functions if f.name in listed))
    if not chat and isinstance(kind, str) and kind in BUILTIN_CHOICES:
        return Choice("none", None, functions)
    raise reject("tool_choice.invalid")


# --------------------------------------------------------------------------- formats


def read_format(value: Any, chat: bool) -> tuple[str, Any, Any]:
    """(output kind, schema, the format as the Responses echo shows it)."""
    if value is None:
        return "text", None, {"type": "text"}
    kind = value.get("type") if isinstance(value, dict) else value
    if kind not in FORMAT_TYPES or not isinstance(value, dict):
        raise reject("chat.response_format_type" if chat else "responses.format_type", got=kind)
    if kind != "json_schema":
        return kind, None, {"type": kind}
    if chat:
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise reject("chat.json_schema_missing")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise reject("chat.json_schema_name")
        schema = spec.get("schema")
        return kind, schema if schema is not None else {"type": "object"}, None
    if not isinstance(value.get("name"), str) or not value["name"]:
        raise reject("responses.format_name")
    if not isinstance(value.get("schema"), dict):
        raise reject("responses.format_schema")
    echo = {
        "type": "json_schema",
        "name": value["name"],
        "schema": value["schema"],
        "strict": value.get("strict"),
        "description": value.get("description"),
    }
    return kind, value["schema"], echo


# --------------------------------------------------------------------------- logprobs


def read_top_logprobs(value: Any) -> int | None:
    """`top_logprobs`: an integer from 0 to 20, or absent (None)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise reject("top_logprobs.type", got=_type_name(value))
    if value > MAX_TOP_LOGPROBS:
        raise reject("top_logprobs.above_max", got=value)
    if value < 0:
        raise reject("top_logprobs.below_min", got=value)
    return value


def chat_logprobs(body: Mapping[str, Any]) -> int | None:
    """The alternatives a chat answer's logprobs come with; None without `logprobs: true`."""
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise reject("chat.logprobs_type", got=_type_name(logprobs))
    top = read_top_logprobs(body.get("top_logprobs"))
    if top is not None and logprobs is not True:
        raise reject("chat.top_logprobs_without_logprobs")
    return (top or 0) if logprobs else None


def responses_logprobs(body: Mapping[str, Any]) -> int | None:
    """The same for a Responses request: logprobs only when `include` asks for them."""
    top = read_top_logprobs(body.get("top_logprobs"))
    include = body.get("include")
    if include is None:
        return None
    if not isinstance(include, list):
        raise reject("responses.include_type", got=_type_name(include))
    for i, value in enumerate(include):
        if not isinstance(value, str) or value not in INCLUDABLE:
            raise reject("responses.include_value", i=i, got=_text(value))
    return (top or 0) if OUTPUT_TEXT_LOGPROBS in include else None


# --------------------------------------------------------------------------- conversations


def chat_conversation(messages: Sequence[Any]) -> list[Entry]:
    """The conversation of chat `messages`; tool messages must answer the assistant message
    right before them, and every call it made before the next other message."""
    entries: list[Entry] = []
    # The calls of the last assistant message with tool_calls, while only tool messages follow.
    open_calls: dict[str, bool] = {}
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise reject("chat.message_not_object", i=i, got=_type_name(message))
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise reject("chat.unknown_role", i=i, role=_text(role))
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise reject("chat.tool_without_call", i=i)
            open_calls[call_id] = True
            entries.append(ToolResult(call_id, content_text(message.get("content"))))
            continue
        _check_answered(open_calls)
        open_calls = {}
        text = content_text(message.get("content"))
        refusal = message.get("refusal")
        if role == "assistant" and isinstance(refusal, str):
            text = " ".join(part for part in (text, refusal) if part)
        entries.append(Message(role, text))
        calls = message.get("tool_calls") if role == "assistant" else None
        for j, call in enumerate(calls if isinstance(calls, list) else []):
            call_id = call.get("id") if isinstance(call, dict) else None
            if not isinstance(call_id, str) or not call_id:
                raise reject("chat.tool_call_without_id", i=i, j=j)
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            arguments = function.get("arguments")
            entries.append(
                ToolCall(
                    call_id,
                    _text(function.get("name")),
                    arguments if isinstance(arguments, str) else "",
                )
            )
            open_calls[call_id] = False
    _check_answered(open_calls)
    return entries


def _check_answered(open_calls: Mapping[str, bool]) -> None:
    unanswered = [call_id for call_id, answered in open_calls.items() if not answered]
    if unanswered:
        raise reject("chat.unanswered_tool_calls", ids=", ".join(unanswered))


# An item the mock produced, by id (a message's or a function call's): its entries, or None.
ItemLookup = Callable[[str], "tuple[Entry, ...] | None"]


def responses_input(value: str | Sequence[Any], lookup: ItemLookup) -> list[Entry]:
    """The conversation entries of a Responses `input`."""
    if isinstance(value, str):
        return [Message("user", value)]
    entries: list[Entry] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise reject("responses.item_not_object", i=i, got=_type_name(item))
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in RESPONSES_ROLES:
                raise reject("responses.unknown_role", i=i, role=_text(role))
            entries.append(Message(role, content_text(item.get("content"))))
        elif kind == "function_call":
            fields = [_required(item, i, key) for key in ("call_id", "name")]
            arguments = item.get("arguments")
            item_id = item.get("id")
            entries.append(
                ToolCall(
                    fields[0],
                    fields[1],
                    arguments if isinstance(arguments, str) else "",
                    item_id if isinstance(item_id, str) else "",
                )
            )
        elif kind == "function_call_output":
            output = item.get("output")
            entries.append(ToolResult(_required(item, i, "call_id"), content_text(output)))
        elif kind == "item_reference":
            item_id = _required(item, i, "id")
            found = lookup(item_id)
            if found is None:
                raise reject("responses.item_not_found", id=item_id)
            entries.extend(found)
        elif not isinstance(kind, str) or kind not in OTHER_ITEM_TYPES:
            raise reject("responses.unknown_item_type", i=i, got=_text(kind))
    return entries


def _required(item: Mapping[str, Any], i: int, key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise reject("responses.item_field_missing", i=i, field=key)
    return value


def check_calls_answered(history: Sequence[Entry], entries: Sequence[Entry]) -> None:
    """Every function_call_output names a call of the conversation (history and input), and
    every call of it has an output."""
    conversation = [*history, *entries]
    calls = [e.call_id for e in conversation if isinstance(e, ToolCall)]
    answered = {e.call_id for e in conversation if isinstance(e, ToolResult)}
    for entry in entries:
        if isinstance(entry, ToolResult) and entry.call_id not in calls:
            raise reject("responses.unknown_call_output", id=entry.call_id)
    for call_id in calls:
        if call_id not in answered:
            raise reject("responses.unanswered_call", id=call_id)


# --------------------------------------------------------------------------- requests


def chat_request(body: Mapping[str, Any], limit: int | None) -> tuple[list[Entry], Options]:
    """The conversation and options of a chat request (`messages` is a list already)."""
    tools = read_tools(body.get("tools"), chat=True)
    if body.get("tool_choice") is not None and not body.get("tools"):
        raise reject("chat.tool_choice_without_tools")
    choice = read_tool_choice(body.get("tool_choice"), tools, chat=True)
    output, schema, _ = read_format(body.get("response_format"), chat=True)
    top_logprobs = chat_logprobs(body)
    entries = chat_conversation(body["messages"])
    options = Options(
        functions=choice.functions,
        choice=choice.mode,
        forced=choice.forced,
        parallel=body.get("parallel_tool_calls") is not False,
        output=output,
        schema=schema,
        limit=limit,
        top_logprobs=top_logprobs,
        reasoning=reasoning_field(body.get("model")),
    )
    return entries, options


@dataclass(frozen=True)
class ResponsesRequest:
    entries: list[Entry]
    options: Options
    # The settings the response object echoes: tools, tool_choice, parallel_tool_calls, text.
    echo: dict[str, Any]


def responses_request(
    body: Mapping[str, Any],
    limit: int | None,
    history: Sequence[Entry],
    lookup: ItemLookup,
) -> ResponsesRequest:
    """The input entries, options and echo of a Responses request (after `history`, the
    conversation `previous_response_id` continues)."""
    tools = read_tools(body.get("tools"), chat=False)
    choice = read_tool_choice(body.get("tool_choice"), tools, chat=False)
    text = body.get("text")
    text = text if isinstance(text, dict) else {}
    output, schema, format_echo = read_format(text.get("format"), chat=False)
    top_logprobs = responses_logprobs(body)
    entries = responses_input(body["input"], lookup)
    check_calls_answered(history, entries)
    parallel = body.get("parallel_tool_calls") is not False
    text_echo: dict[str, Any] = {"format": format_echo}
    if "verbosity" in text:
        text_echo["verbosity"] = text["verbosity"]
    instructions = body.get("instructions")
    options = Options(
        functions=choice.functions,
        choice=choice.mode,
        forced=choice.forced,
        parallel=parallel,
        output=output,
        schema=schema,
        limit=limit,
        extra_input=instructions if isinstance(instructions, str) else "",
        top_logprobs=top_logprobs,
        reasoning=reasoning_field(body.get("model")),
    )
    tool_choice = body.get("tool_choice")
    echo = {
        "tools": tools.echoed,
        "tool_choice": tool_choice if tool_choice is not None else "auto",
        "parallel_tool_calls": parallel,
        "text": text_echo,
    }
    return ResponsesRequest(entries, options, echo)
