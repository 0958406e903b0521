"""The Anthropic adapter (integrations/claude/) and the fake API it is tested against.

Answer validation is a table of plain inputs; the wire tests go over real HTTP to the fake.
"""

import json
import urllib.error
import urllib.request
from decimal import Decimal as D

import pytest

from integrations.claude import (
    NOTE_MAX_CHARS,
    TOOL_NAME,
    CategoryOption,
    ClassificationPrompt,
    ClaudeClassifier,
    ClaudeSettings,
    ModelNotAuthorized,
    ModelRequestRejected,
    ModelUnavailable,
    NoteItem,
    Usage,
    build_message_params,
    max_tokens_for,
    parse_message,
)
from tests.fakes.anthropic_server import fake_anthropic  # noqa: F401 (fixture)

CATEGORIES = (
    CategoryOption("client-meeting", "Client meeting", True),
    CategoryOption("development", "Development", True),
)
PROMPT = ClassificationPrompt("Acme", CATEGORIES, (NoteItem("e1", "sync"), NoteItem("e2", "fix")))


def message(*items, stop="tool_use", content=None, usage=None):
    return {
        "id": "msg_1",
        "stop_reason": stop,
        "content": content
        if content is not None
        else [{"type": "tool_use", "id": "t1", "name": TOOL_NAME, "input": {"items": list(items)}}],
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


def item(
    ref="e1", category="client-meeting", description="Client sync", confidence=D("0.9"), **extra
):
    return {
        "entry_ref": ref,
        "category": category,
        "description": description,
        "confidence": confidence,
        **extra,
    }


def test_a_good_answer():
    parsed = parse_message(message(item(), item("e2", "development", "Bug fix", 1)), PROMPT)
    assert parsed.status == "ok"
    assert parsed.rejections == {}
    assert [(a.ref, a.category, a.description, a.confidence) for a in parsed.answers.values()] == [
        ("e1", "client-meeting", "Client sync", D("0.9")),
        ("e2", "development", "Bug fix", 1),
    ]
    assert parsed.usage == Usage(10, 5, 0, 0)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (
            item("e2", category="travel"),
            "the model chose 'travel', which is not an allowed category",
        ),
        (item("e2", confidence=D("-0.1")), "answer malformed: confidence -0.1 is outside 0..1"),
        (item("e2", confidence=True), "answer malformed: confidence is not a number"),
        (item("e2", confidence=None), "answer malformed: confidence is not a number"),
        (item("e2", category=None), "answer malformed: no category"),
        (item("e2", description=7), "answer malformed: no description"),
        (
            item("e2", description="x" * 121),
            "answer malformed: description longer than 120 characters",
        ),
    ],
)
def test_a_bad_item_is_rejected_and_the_rest_kept(bad, reason):
    parsed = parse_message(message(item(), bad), PROMPT)
    assert parsed.status == "partial"
    assert list(parsed.answers) == ["e1"]
    assert parsed.rejections == {"e2": reason}


def test_fields_nobody_asked_for_are_never_read():
    parsed = parse_message(
        message(item(hours=10, amount="9999", client="Other"), item("e2")), PROMPT
    )
    assert parsed.answers["e1"] == parsed.answers["e1"].__class__(
        "e1", "client-meeting", "Client sync", D("0.9")
    )


def test_descriptions_are_one_clean_line():
    parsed = parse_message(message(item(description=" Client\n\tsync\x00 "), item("e2")), PROMPT)
    assert parsed.answers["e1"].description == "Client sync"


def test_refs_must_be_those_sent_and_answered_once():
    parsed = parse_message(
        message(item("e9"), {"category": "development"}, item("e2"), item("e2", "development")),
        PROMPT,
    )
    assert parsed.unknown_refs == ("e9", "(no entry_ref)")
    assert parsed.rejections == {
        "e1": "missing from the model's answer",
        "e2": "answer malformed: the entry was answered twice",
    }
    assert parsed.status == "invalid"


@pytest.mark.parametrize(
    "body, reason",
    [
        (
            message(item(), item("e2"), stop="max_tokens"),
            "answer cut off (the model reached max_tokens)",
        ),
        (message(stop="refusal", content=[]), "the model refused to answer"),
        (
            message(content=[{"type": "text", "text": "{}"}]),
            "answer malformed: expected one record_classifications call, got 0",
        ),
        (
            message(content=[{"type": "tool_use", "name": TOOL_NAME, "input": {"items": []}}] * 2),
            "answer malformed: expected one record_classifications call, got 2",
        ),
        (
            message(content=[{"type": "tool_use", "name": TOOL_NAME, "input": []}]),
            "answer malformed: no list of items",
        ),
    ],
)
def test_an_unusable_answer_rejects_every_item(body, reason):
    parsed = parse_message(body, PROMPT)
    assert parsed.rejections == {"e1": reason, "e2": reason}
    assert parsed.answers == {}


def test_other_content_blocks_are_ignored_and_null_cache_counts_are_zero():
    body = message(
        item(),
        item("e2"),
        usage={
            "input_tokens": 7,
            "output_tokens": 3,
            "cache_read_input_tokens": None,
            "cache_creation_input_tokens": 40,
        },
    )
    body["content"].insert(0, {"type": "text", "text": "Here you go"})
    parsed = parse_message(body, PROMPT)
    assert (parsed.status, parsed.usage) == ("ok", Usage(7, 3, 0, 40))


def test_request_body():
    long_note = "Reviewed " + "very " * 200 + "long note"
    prompt = ClassificationPrompt(
        "Acme",
        CATEGORIES,
        (NoteItem("e1", long_note),),
        client_rules=("task is 'Travel' -> travel",),
    )
    params = build_message_params(prompt, model="claude-haiku-5-5")
    assert sorted(params) == ["max_tokens", "messages", "model", "system", "tool_choice", "tools"]
    text = params["messages"][0]["content"]
    listing = json.loads(text.split("<entries>\n")[1].split("\n</entries>")[0])
    assert listing == [{"ref": "e1", "note": long_note[:NOTE_MAX_CHARS]}]
    assert "- task is 'Travel' -> travel" in params["system"][1]["text"]
    assert (max_tokens_for(1), max_tokens_for(40), max_tokens_for(200)) == (346, 3856, 8192)


# --- over HTTP ----------------------------------------------------------------------------


def client_for(fake, **overrides):
    config = {
        "api_key": "test-key",
        "model": "claude-haiku-5-5",
        "base_url": fake.base_url,
        "max_retries": 0,
        "timeout_seconds": 5,
        **overrides,
    }
    return ClaudeClassifier(ClaudeSettings(**config))


@pytest.mark.parametrize(
    "status, error",
    [
        (400, ModelRequestRejected),
        (413, ModelRequestRejected),
        (403, ModelNotAuthorized),
        (402, ModelNotAuthorized),
        (429, ModelUnavailable),
        (503, ModelUnavailable),
        (529, ModelUnavailable),
        ("die", ModelUnavailable),
    ],
)
def test_sdk_errors_become_three_named_errors(fake_anthropic, status, error):  # noqa: F811
    fake_anthropic.script = [status]
    with pytest.raises(error):
        client_for(fake_anthropic).classify(PROMPT)


def test_an_unknown_model_is_a_rejected_request(fake_anthropic):  # noqa: F811
    with pytest.raises(ModelRequestRejected, match="HTTP 404: model: claude-nonexistent"):
        client_for(fake_anthropic, model="claude-nonexistent").classify(PROMPT)


def test_attempts_and_latency_are_reported(fake_anthropic):  # noqa: F811
    fake_anthropic.script = [529]
    result = client_for(fake_anthropic, max_retries=1).classify(PROMPT)
    assert (result.attempts, result.status) == (2, "ok")
    assert result.latency_ms >= 0


def raw_post(fake, path, body, headers):
    request = urllib.request.Request(
        fake.base_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


GOOD_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({}, 200, None),
        ({"temperature": 0}, 400, "temperature: is deprecated for this model"),
        ({"top_p": 0.9}, 400, "top_p: is deprecated for this model"),
        ({"colour": "red"}, 400, "colour: Extra inputs are not permitted"),
        ({"model": "gpt-4"}, 404, "model: gpt-4"),
        ({"max_tokens": 0}, 400, "max_tokens: must be a positive integer"),
        ({"tool_choice": None}, 400, "tool_choice: this fake answers forced tool use only"),
        (
            {"tools": None},
            400,
            "this fake answers classification requests only: send tools and "
            "tool_choice, or output_config.format",
        ),
    ],
)
def test_the_fake_checks_requests_like_the_api(fake_anthropic, change, status, message):  # noqa: F811
    body = {**build_message_params(PROMPT, model="claude-haiku-5-5"), **change}
    body = {k: v for k, v in body.items() if v is not None}
    got, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    assert got == status
    if message:
        assert answer["error"]["message"] == message
    else:
        assert answer["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"x-api-key": "test-key", "anthropic-version": "2023-06-01"}, 200),
        ({"authorization": "Bearer test-key", "anthropic-version": "2026-10-21"}, 200),
        ({"anthropic-version": "2026-10-21"}, 401),
        ({"x-api-key": "wrong", "anthropic-version": "2026-10-21"}, 401),
        ({"x-api-key": "test-key"}, 400),
    ],
)
def test_the_fake_checks_auth_and_version_headers(fake_anthropic, headers, status):  # noqa: F811
    body = build_message_params(PROMPT, model="claude-haiku-5-5")
    assert raw_post(fake_anthropic, "/v1/messages", body, headers)[0] == status


def test_the_fake_answers_with_output_config_too(fake_anthropic):  # noqa: F811
    body = build_message_params(PROMPT, model="claude-haiku-5-5")
    schema = body.pop("tools")[0]["input_schema"]
    body.pop("tool_choice")
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    status, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    assert (status, answer["content"][0]["type"]) == (200, "text")
    assert [i["category"] for i in json.loads(answer["content"][0]["text"])["items"]] == [
        "client-meeting",
        "development",
    ]


def test_prompt_caching_is_reported_like_the_api(fake_anthropic):  # noqa: F811
    fake_anthropic.min_cache_tokens = 100
    client = client_for(fake_anthropic)
    first, second = client.classify(PROMPT), client.classify(PROMPT)
    assert first.usage.cache_read_tokens == 0 < first.usage.cache_write_tokens
    assert second.usage.cache_write_tokens == 0
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens
    assert first.usage.prompt_tokens == second.usage.prompt_tokens


def test_batch_results_are_matched_on_custom_id(fake_anthropic):  # noqa: F811
    client = client_for(fake_anthropic)
    fake_anthropic.batch_die_after = 1
    batch_id = client.create_batch([("a", PROMPT), ("b", PROMPT)])
    polls = []
    status = client.wait_for_batch(batch_id, poll_seconds=0, on_poll=polls.append)
    assert (status.ended, status.succeeded, status.errored, len(polls)) == (True, 1, 1, 2)
    results = {
        r.custom_id: r
        for r in client.batch_results(batch_id, {"a": PROMPT, "b": PROMPT, "c": PROMPT})
    }
    assert results["a"].answer.answers["e1"].category == "client-meeting"
    assert (results["b"].answer, results["b"].failure) == (None, "errored: api_error")
    assert (results["c"].answer, results["c"].failure) == (None, "no result in the batch")
