"""The mock's pure parts: the reply and token rule, fault spec parsing, fault rules, redaction."""

from __future__ import annotations

import hashlib

import pytest

from harness.mock.content import (
    Entry,
    Message,
    Options,
    ToolCall,
    ToolResult,
    content_text,
    decide,
    stream_deltas,
    words,
)
from harness.mock.faults import (
    MODEL_FAULTS,
    FaultRules,
    FaultSpecError,
    parse_fault,
    parse_fault_header,
)
from harness.mock.state import (
    Counts,
    RequestLog,
    ResponseStore,
    StoredResponse,
    loggable_headers,
)
from harness.mock.validation import chat_conversation, responses_input


def compose_reply(turns, limit, extra_input=""):
    return decide(
        [Message(role, text) for role, text in turns], Options(limit=limit, extra_input=extra_input)
    )


def chat_turns(messages):
    return [(e.role, e.text) for e in chat_conversation(messages)]


def responses_turns(value):
    return [
        (e.role, e.text) for e in responses_input(value, lambda _: None) if isinstance(e, Message)
    ]


def test_words_counts_whitespace_separated_words():
    assert words("") == 0
    assert words("  one\ttwo\nthree  ") == 3


def test_reply_names_the_turn_and_echoes_the_last_user_message():
    turns = chat_turns(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "reply 1: first question"},
            {"role": "user", "content": "second one here"},
        ]
    )
    reply = compose_reply(turns, limit=None)
    assert reply.text == "reply 2: second one here"
    assert not reply.truncated
    assert reply.input_tokens == 2 + 2 + 4 + 3
    assert reply.output_tokens == 5
    assert reply.total_tokens == 16


def test_reply_without_user_message_has_no_trailing_space():
    reply = compose_reply(chat_turns([{"role": "system", "content": "x"}]), limit=None)
    assert reply.text == "reply 0:"


def test_limit_keeps_the_first_words_and_marks_truncation():
    turns = [("user", "a b c d")]
    assert compose_reply(turns, limit=3).text == "reply 1: a"
    assert compose_reply(turns, limit=3).truncated
    # A limit that fits the whole reply is not a truncation.
    assert not compose_reply(turns, limit=6).truncated
    assert compose_reply(turns, limit=0).words == ()


def test_irregular_whitespace_in_the_reply_is_normalised():
    reply = compose_reply([("user", "  spaced\n\tout  ")], limit=None)
    assert reply.text == "reply 1: spaced out"
    assert "".join(stream_deltas(reply.words)) == reply.text


def test_content_text_joins_text_parts_and_skips_others():
    content = [
        {"type": "text", "text": "one two"},
        {"type": "image_url", "image_url": {"url": "http://x"}},
        {"type": "input_text", "text": "three"},
        {"type": "refusal", "refusal": "no"},
    ]
    # A refusal part counts as the assistant's words, as a refusal the mock stored does.
    assert content_text(content) == "one two three no"
    assert content_text(None) == ""


@pytest.mark.parametrize("odd_type", [[], {}, 3, None])
def test_content_parts_with_a_non_string_type_are_skipped(odd_type):
    # Found by fuzzing: an unhashable `type` used to crash the mock with a plain-text 500.
    assert content_text([{"type": odd_type, "text": "x"}, {"type": "text", "text": "y"}]) == "y"


def test_responses_turns_from_string_and_items():
    assert responses_turns("hi there") == [("user", "hi there")]
    items = [
        {"role": "developer", "content": "rules here"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "function_call_output", "call_id": "c1", "output": "not counted"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "earlier answer"}]},
    ]
    assert responses_turns(items) == [
        ("developer", "rules here"),
        ("user", "q"),
        ("assistant", "earlier answer"),
    ]


def test_instructions_count_as_input_but_not_as_a_turn():
    reply = compose_reply([("user", "hello")], limit=None, extra_input="you are terse")
    assert reply.text == "reply 1: hello"
    assert reply.input_tokens == 4


def test_stream_deltas_prefix_a_space_after_the_first_word():
    assert stream_deltas(["reply", "1:", "hi"]) == ["reply", " 1:", " hi"]


def test_fault_header_parses_numbers_and_keeps_strings():
    fault = parse_fault_header("type=status; status=503;retry_after=2;retry_after_ms=1500")
    assert fault.type == "status"
    assert fault.spec == {"type": "status", "status": 503, "retry_after": 2, "retry_after_ms": 1500}
    assert parse_fault_header("type=status;status=500;message=42 apples").spec["message"] == (
        "42 apples"
    )


@pytest.mark.parametrize(
    "header",
    [
        "type=explode",
        "type=status",
        "type=status;status=200",
        "type=disconnect;after_chunk=2",
        "type=latency;first_byte_ms=-5",
        "type=disconnect;after_chunks=1.5",
        "type",
    ],
)
def test_invalid_fault_headers_are_rejected(header):
    with pytest.raises(FaultSpecError):
        parse_fault_header(header)


def test_special_model_names_map_to_the_documented_faults():
    assert MODEL_FAULTS["fault-429"].spec == {"type": "status", "status": 429}
    assert MODEL_FAULTS["fault-slow"].spec == {
        "type": "latency",
        "first_byte_ms": 200,
        "between_chunks_ms": 20,
    }
    for name in ("fault-disconnect", "fault-malformed", "fault-stream-error"):
        assert MODEL_FAULTS[name].after_chunks == 2


def test_rule_is_consumed_exactly_times_then_disappears():
    rules = FaultRules()
    rules.add({"fault": {"type": "status", "status": 429}, "times": 2, "upstream": "b"})
    assert rules.take("a", None, "m", "chat") is None
    assert rules.take("b", None, "m", "chat").spec["status"] == 429
    assert rules.describe()[0]["times"] == 1
    assert rules.take("b", None, "m", "responses").spec["status"] == 429
    assert rules.take("b", None, "m", "chat") is None
    assert rules.describe() == []


def test_rules_match_in_insertion_order_and_on_every_selector():
    rules = FaultRules()
    rules.add({"fault": {"type": "reset"}, "tag": "t", "model": "m", "path": "responses"})
    rules.add({"fault": {"type": "hang"}})
    assert rules.take("x", "t", "m", "chat").type == "hang"
    assert rules.take("x", "t", "m", "responses").type == "reset"


def test_rules_without_path_leave_model_listings_alone():
    rules = FaultRules()
    rules.add({"fault": {"type": "hang"}})
    assert rules.take("x", None, None, "models") is None
    rules.add({"fault": {"type": "reset"}, "path": "models"})
    assert rules.take("x", None, None, "models").type == "reset"


@pytest.mark.parametrize(
    "rule",
    [
        {"fault": {"type": "hang"}, "times": 0},
        {"fault": {"type": "hang"}, "path": "embeddings"},
        {"fault": {"type": "hang"}, "upstrem": "typo"},
        {"fault": {"type": "nope"}},
        {"times": 1},
        ["not", "an", "object"],
    ],
)
def test_invalid_rules_are_rejected(rule):
    with pytest.raises(FaultSpecError):
        FaultRules().add(rule)


def test_rule_removal_by_tag_keeps_rules_of_other_tags_and_untagged_ones():
    rules = FaultRules()
    rules.add({"fault": {"type": "hang"}, "tag": "mine"})
    rules.add({"fault": {"type": "hang"}, "tag": "theirs"})
    rules.add({"fault": {"type": "hang"}})
    rules.remove(upstream=None, tag="mine")
    assert [rule.get("tag") for rule in rules.describe()] == ["theirs", None]
    rules.remove(upstream=None, tag=None)
    assert rules.describe() == []


def test_parse_fault_requires_an_object():
    with pytest.raises(FaultSpecError):
        parse_fault("status")


def test_secret_headers_are_redacted_by_hash_and_names_lower_cased():
    logged = loggable_headers(
        [("Authorization", "Bearer sk-1"), ("X-Api-Key", "k"), ("X-Trace", "a"), ("x-trace", "b")]
    )
    digest = hashlib.sha256(b"Bearer sk-1").hexdigest()[:12]
    assert logged["authorization"] == f"<redacted sha256:{digest}>"
    assert "k" not in logged["x-api-key"]
    assert logged["x-trace"] == "a, b"


def test_request_log_is_a_ring_buffer_filtered_by_selectors():
    log = RequestLog(capacity=3)
    for upstream, tag in [("a", "t1"), ("a", "t2"), ("b", "t1"), ("b", "t2")]:
        log.record(upstream=upstream, method="POST", path="/x", tag=tag, headers={})
    assert [entry["seq"] for entry in log.query(None, None, None)] == [2, 3, 4]
    assert [entry["seq"] for entry in log.query("b", None, 1)] == [4]
    assert [entry["seq"] for entry in log.query(None, "t1", None)] == [3]
    log.remove(upstream="b", tag=None)
    assert [entry["seq"] for entry in log.query(None, None, None)] == [2]


def test_counts_aggregate_by_upstream_and_filter_by_tag():
    counts = Counts()
    counts.add("t", "a", "chat")
    counts.add("t", "a", "models")
    counts.add(None, "a", "responses")
    counts.add("t", "b", "other")
    assert counts.summary("t") == {
        "total": 3,
        "upstreams": {
            "a": {"total": 2, "chat": 1, "responses": 0, "models": 1},
            "b": {"total": 1, "chat": 0, "responses": 0, "models": 0},
        },
    }
    assert counts.summary(None)["total"] == 4
    counts.remove(upstream=None, tag="t")
    assert counts.summary(None)["total"] == 1


def _stored(*conversation: Entry, items: dict[str, tuple[Entry, ...]] | None = None):
    return StoredResponse({"object": "response"}, [], conversation, items or {})


def test_response_store_evicts_the_oldest_and_is_scoped_by_upstream():
    store = ResponseStore(capacity=2)
    call = ToolCall("call_1", "f", "{}", "fc_1")
    store.put("a", "r1", _stored(Message("user", "one"), call, items={"fc_1": (call,)}))
    store.put("a", "r2", _stored(Message("user", "two")))
    assert store.item("a", "fc_1") == (call,)
    assert store.item("b", "fc_1") is None
    store.put("a", "r3", _stored(Message("user", "three"), ToolResult("call_1", "x")))
    assert store.get("a", "r1") is None
    # The items of an evicted response go with it.
    assert store.item("a", "fc_1") is None
    assert store.get("a", "r3") == (Message("user", "three"), ToolResult("call_1", "x"))
    assert store.get("b", "r3") is None


def test_a_deleted_response_takes_its_items_with_it():
    store = ResponseStore()
    call = ToolCall("call_1", "f", "{}", "fc_1")
    store.put("a", "r1", _stored(call, items={"fc_1": (call,)}))
    assert not store.delete("b", "r1"), "another upstream does not hold it"
    assert store.delete("a", "r1")
    assert store.response("a", "r1") is None
    assert store.item("a", "fc_1") is None
    assert not store.delete("a", "r1"), "a second delete finds nothing"
