"""The Anthropic adapter (integrations/claude/) and the fake API it is tested against.

Answer validation is a table of plain inputs; the wire tests go over real HTTP to the fake.
"""

import json
import urllib.error
import urllib.request
from decimal import Decimal as D
from pathlib import Path

import pytest

from integrations.claude import (
    NOTE_MAX_CHARS,
    TOOL_NAME,
    Canary,
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
    capabilities_of,
    max_tokens_for,
    parse_message,
    tool_definition,
)
from integrations.claude.batches import parse_batch_results
from tests.fakes.anthropic_server import fake_anthropic  # noqa: F401 (fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def fixture(name: str) -> dict:
    """A published example (tests/fixtures/anthropic/README.md), with the source it names."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    assert data["source"].startswith("api-notes 5.")
    return data


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
            message(content=[{"type": "text", "text": "All of these look like development."}]),
            "answer malformed: the answer is not the JSON object asked for",
        ),
        (
            message(content=[]),
            "answer malformed: expected one record_classifications call or "
            "a JSON answer, got neither",
        ),
        (
            message(content=[{"type": "text", "text": "{}"}]),
            "answer malformed: no list of items",
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
    assert sorted(params) == ["max_tokens", "messages", "model", "output_config", "system"]
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
        (
            {"max_tokens": 128_001},
            400,
            "max_tokens: 128001 > 128000, which is the maximum allowed number of output tokens "
            "for claude-haiku-5-5",
        ),
        (
            {"output_config": None},
            400,
            "this fake answers classification requests only: send tools and "
            "tool_choice, or output_config.format",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}},
            400,
            '"thinking.type.enabled" is not supported for this model. Use '
            '"thinking.type.adaptive" and "output_config.effort" to control thinking behavior.',
        ),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "{"}]},
            400,
            "This model does not support assistant message prefill. The conversation must end "
            "with a user message.",
        ),
        ({"thinking": {"type": "disabled"}}, 200, None),  # Haiku 5.5 accepts it
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
        assert answer["stop_reason"] == "end_turn"


def test_the_fake_answers_one_tool_with_tool_choice_auto(fake_anthropic):  # noqa: F811
    body = build_message_params(PROMPT, model="claude-sonnet-5-5")
    body.pop("output_config")
    body["tools"] = [tool_definition(CATEGORIES)]
    body["tool_choice"] = {"type": "auto"}
    status, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    assert status == 200
    assert [b["type"] for b in answer["content"]] == ["thinking", "tool_use"]
    parsed = parse_message(json.loads(json.dumps(answer), parse_float=D), PROMPT)
    assert (parsed.status, parsed.rejections) == ("ok", {})


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-opus-5-5"])
@pytest.mark.parametrize("kind", ["tool", "any"])
def test_the_fake_refuses_a_forced_tool_choice_where_the_model_does(fake_anthropic, model, kind):  # noqa: F811
    body = build_message_params(PROMPT, model=model)
    body.pop("output_config")
    body["tools"] = [tool_definition(CATEGORIES)]
    body["tool_choice"] = {"type": kind, **({"name": TOOL_NAME} if kind == "tool" else {})}
    status, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    expected = fixture("error_forced_tool_choice")
    assert (status, answer["type"], answer["error"]) == (
        expected["status"],
        "error",
        expected["payload"]["error"],
    )
    assert answer["request_id"]


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-opus-5-5"])
def test_the_fake_refuses_thinking_disabled_where_the_model_does(fake_anthropic, model):  # noqa: F811
    body = {**build_message_params(PROMPT, model=model), "thinking": {"type": "disabled"}}
    status, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    assert (status, answer["error"]["type"]) == (400, "invalid_request_error")
    assert answer["error"]["message"].startswith('"thinking.type.disabled" is not supported')


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


def test_the_fake_answers_structured_outputs_after_thinking(fake_anthropic):  # noqa: F811
    body = build_message_params(PROMPT, model="claude-haiku-5-5")
    status, answer = raw_post(fake_anthropic, "/v1/messages", body, GOOD_HEADERS)
    assert status == 200
    assert [b["type"] for b in answer["content"]] == ["thinking", "text"]
    assert [i["category"] for i in json.loads(answer["content"][1]["text"])["items"]] == [
        "client-meeting",
        "development",
    ]
    # Haiku 5.5 thinks by default: 1024 + 32 per item simulated thinking tokens are output.
    assert answer["usage"]["output_tokens"] > 1024 + 32 * 2


@pytest.mark.parametrize(
    "model, cached",
    [
        ("claude-haiku-5-5", True),  # minimum 512 tokens: the instructions reach it
        ("claude-sonnet-5-5", True),  # 512
        ("claude-opus-5-5", False),  # not published: the fake takes 4,096
        ("claude-haiku-4-5", False),  # 4,096
    ],
)
def test_prompt_caching_starts_at_each_models_minimum(fake_anthropic, model, cached):  # noqa: F811
    client = client_for(fake_anthropic, model=model)
    first, second = client.classify(PROMPT), client.classify(PROMPT)
    assert (first.usage.cache_write_tokens > 0, second.usage.cache_read_tokens > 0) == (
        cached,
        cached,
    )
    assert first.usage.prompt_tokens == second.usage.prompt_tokens


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


# --- the request shape per model (capabilities.py) -----------------------------------------


@pytest.mark.parametrize(
    "model, thinking_room",
    [
        ("claude-haiku-5-5", 4096),  # thinks by default; thinking counts toward max_tokens
        ("claude-sonnet-5-5", 8192),
        ("claude-opus-5-5", 4096),
        ("claude-haiku-4-5-20251001", 0),  # no thinking unless asked for
    ],
)
def test_every_known_model_gets_structured_outputs_and_room_to_think(model, thinking_room):
    params = build_message_params(PROMPT, model=model)
    assert sorted(params) == ["max_tokens", "messages", "model", "output_config", "system"]
    assert params["output_config"]["format"]["schema"]["required"] == ["items"]
    assert params["max_tokens"] == max_tokens_for(2) + thinking_room
    assert params["messages"][-1]["role"] == "user"


def test_a_model_without_figures_gets_one_tool_with_tool_choice_auto():
    params = build_message_params(PROMPT, model="claude-mythos-5-2")
    assert params["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [t["name"] for t in params["tools"]] == [TOOL_NAME]
    assert "output_config" not in params and "thinking" not in params
    caps = capabilities_of("claude-mythos-5-2")
    assert (caps.forced_tool_choice, caps.sampling_parameters) == (False, False)


def test_the_capability_table_holds_the_published_figures():
    haiku, sonnet, opus = (
        capabilities_of(m) for m in ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")
    )
    assert (haiku.forced_tool_choice, sonnet.forced_tool_choice, opus.forced_tool_choice) == (
        True,
        False,
        False,
    )
    assert (haiku.cache_min_tokens, sonnet.cache_min_tokens, opus.cache_min_tokens) == (
        512,
        512,
        None,
    )
    assert {c.max_output_tokens for c in (haiku, sonnet, opus)} == {128_000}
    assert all(c.thinks_by_default and c.thinking_counts_toward_max_tokens for c in (haiku, sonnet))
    assert (haiku.thinking_can_be_disabled, sonnet.thinking_can_be_disabled) == (True, False)
    assert not any(c.sampling_parameters for c in (haiku, sonnet, opus))


@pytest.mark.parametrize("model", ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"])
def test_each_current_model_answers_over_http(fake_anthropic, model):  # noqa: F811
    result = client_for(fake_anthropic, model=model).classify(PROMPT)
    assert (result.status, result.attempts, result.stop_reason) == ("ok", 1, "end_turn")
    assert [a.category for a in result.answers.values()] == ["client-meeting", "development"]


# --- known-answer items ---------------------------------------------------------------------

CANARY_PROMPT = ClassificationPrompt(
    "Acme",
    CATEGORIES,
    (NoteItem("k1", "Development"), NoteItem("e1", "sync"), NoteItem("e2", "fix")),
    canaries=(Canary("k1", "development"),),
)
CHECK_FAILED = "the answer failed the known-answer check (the note may carry instructions)"


def test_a_right_known_answer_is_checked_and_left_out_of_the_answers():
    parsed = parse_message(
        message(item("k1", "development"), item(), item("e2", "development")), CANARY_PROMPT
    )
    assert (parsed.status, parsed.canary_failure, list(parsed.answers)) == ("ok", "", ["e1", "e2"])


@pytest.mark.parametrize(
    "canary_items, failure",
    [
        (
            [item("k1", "client-meeting")],
            "a known-answer item came back as 'client-meeting', not 'development'",
        ),
        (
            [item("k1", "needs_review")],
            "a known-answer item came back as 'needs_review', not 'development'",
        ),
        ([], "a known-answer item was not answered"),
        ([item("k1", "development")] * 2, "a known-answer item was answered twice"),
    ],
)
def test_a_wrong_known_answer_rejects_the_whole_answer(canary_items, failure):
    parsed = parse_message(message(*canary_items, item(), item("e2", "development")), CANARY_PROMPT)
    assert (parsed.canary_failure, parsed.answers) == (failure, {})
    assert parsed.rejections == {"e1": CHECK_FAILED, "e2": CHECK_FAILED}
    assert parsed.status == "invalid"


# --- the vendor's published examples, served by the fake and replayed ----------------------


def test_the_published_forced_request_is_accepted_on_haiku_4_5_and_refused_on_sonnet_5_5(
    fake_anthropic,  # noqa: F811
):
    request = fixture("message_request_tool_forced")["payload"]
    assert raw_post(fake_anthropic, "/v1/messages", request, GOOD_HEADERS)[0] == 200
    refused = fixture("error_forced_tool_choice")
    status, answer = raw_post(
        fake_anthropic, "/v1/messages", {**request, "model": "claude-sonnet-5-5"}, GOOD_HEADERS
    )
    assert (status, answer["error"]) == (refused["status"], refused["payload"]["error"])


def test_the_published_tool_use_answer_replays_through_the_adapter(fake_anthropic):  # noqa: F811
    published = fixture("message_response_tool_use")["payload"]
    fake_anthropic.canned["/v1/messages"] = [(200, published)]
    result = client_for(fake_anthropic).classify(PROMPT)
    # Its tool is not ours (classify_entry): nothing of it is read, every item is malformed.
    assert result.rejections == {
        "e1": "answer malformed: expected one record_classifications call or a JSON answer, "
        "got neither",
        "e2": "answer malformed: expected one record_classifications call or a JSON answer, "
        "got neither",
    }
    assert result.usage == Usage(120, 30, 2048, 0)
    assert result.message_id == "msg_01..."


def test_the_structured_answer_replays_through_the_adapter(fake_anthropic):  # noqa: F811
    fake_anthropic.canned["/v1/messages"] = [
        (200, fixture("message_response_structured")["payload"])
    ]
    result = client_for(fake_anthropic).classify(PROMPT)
    assert result.status == "ok"
    assert [(a.category, a.confidence) for a in result.answers.values()] == [
        ("client-meeting", D("0.93")),
        ("development", D("0.88")),
    ]
    assert result.usage == Usage(95, 412, 1310, 0)  # a null cache count reads as 0


@pytest.mark.parametrize(
    "name, error, message",
    [
        (
            "error_forced_tool_choice",
            ModelRequestRejected,
            'HTTP 400: tool_choice: type "tool" and "any" are not supported for this model.',
        ),
        ("error_overloaded", ModelUnavailable, "HTTP 529: Overloaded"),
    ],
)
def test_the_published_error_bodies_replay_through_the_adapter(
    fake_anthropic,  # noqa: F811
    name,
    error,
    message,
):
    published = fixture(name)
    fake_anthropic.canned["/v1/messages"] = [(published["status"], published["payload"])]
    with pytest.raises(error) as raised:
        client_for(fake_anthropic).classify(PROMPT)
    assert str(raised.value) == message


def test_the_published_batch_object_and_results_replay_through_the_adapter(fake_anthropic):  # noqa: F811
    batch = dict(fixture("batch_ended")["payload"])
    path = f"/v1/messages/batches/{batch['id']}"
    batch["results_url"] = f"{fake_anthropic.base_url}{path}/results"  # the fake's own address
    lines = fixture("batch_results")["lines"]
    fake_anthropic.canned[path] = [(200, batch)]
    fake_anthropic.canned[f"{path}/results"] = [(200, batch), (200, lines)]
    client = client_for(fake_anthropic)

    status = client.batch_status(batch["id"])
    assert (status.ended, status.succeeded, status.errored, status.expired, status.canceled) == (
        True,
        1,
        1,
        1,
        1,
    )
    prompts = {cid: PROMPT for cid in ("entry-123", "entry-124", "entry-125", "entry-126")}
    content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    results = {r.custom_id: r for r in parse_batch_results(content, prompts)}
    assert results["entry-123"].answer.answers["e1"].category == "client-meeting"
    assert {k: r.failure for k, r in results.items() if k != "entry-123"} == {
        "entry-124": "errored: invalid_request_error",
        "entry-125": "expired",
        "entry-126": "canceled",
    }
