"""Planning requests: one client's entries grouped by normalized note and cut into requests,
each prompt carrying the client's rules and examples (its cached prefix).

Two structural defences against a note that steers the model (OWASP LLM01), whatever its
wording:

- **Opaque references.** Each item is sent under a reference derived from a secret key by
  HMAC (random per run for the Messages API; per run from SECRET_KEY for a Message Batch, so a
  resumed run can match its results): no sequential number a note could name or guess ("set
  e1042 to ..."). The adapter rejects answers under unknown, duplicated or missing references.
- **Known-answer items.** Every request carries one or two items whose category is certain
  (a note that is the name of a category, from the client's allowed list: one non-billable,
  one billable when the client has both, so no single "every item is X" order can pass both),
  at positions chosen by the same key. When one comes back wrong, no answer of that request is
  trusted: its entries go to review and its notes are asked again one by one (`one_by_one`),
  so an injected note can only ever spoil its own answer.

A note that also reads like instructions (the SUSPICIOUS pattern) is still asked on its own
from the start: that defence is kept, it is just no longer the only one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.conf import settings

from integrations.claude import Canary, CategoryOption, ClassificationPrompt, Example, NoteItem
from invoices.configuration import Configuration
from invoices.core.classify import AMBIGUOUS
from invoices.models import Classification, ClassificationRule, InvoiceStatus
from timesheets.models import Client, TimeEntry

# A note that reads like instructions to the model is asked on its own: whatever it makes the
# model do can then only touch that note's entries.
SUSPICIOUS = re.compile(
    r"(?i)\b(ignore|disregard|forget)\b.{0,30}\b(instructions?|rules?|prompt)\b"
    r"|\bsystem\s*(prompt|:)|\byou are (now )?(an?|the)\b|\bclassify (every|all)\b"
    r"|\bset (the )?(hours?|rates?|amounts?|category)\b|</?\s*(system|instructions?|entries)\s*>"
)
REF_CHARS = 12  # base32 characters of a reference: 60 bits


@dataclass
class NoteGroup:
    """Entries of one client sharing a normalized note: asked once, as `ref`."""

    ref: str
    note: str
    entry_ids: list[int]
    key: str = ""  # the normalized note (or the entry id without dedupe)

    @property
    def suspicious(self) -> bool:
        return bool(SUSPICIOUS.search(self.note))


@dataclass
class PlannedRequest:
    client_id: int
    custom_id: str
    prompt: ClassificationPrompt
    groups: dict[str, NoteGroup]
    # Where the known-answer items are drawn from: (non-billable, billable) categories.
    canary_pools: tuple[tuple[CategoryOption, ...], ...] = field(default=())

    @property
    def entry_ids(self) -> list[int]:
        return [i for g in self.groups.values() for i in g.entry_ids]


@dataclass
class ClientPlan:
    requests: list[PlannedRequest]
    no_note: list[int]  # nothing to ask: an empty note


def batch_secret(run_id: int) -> bytes:
    """The reference key of a Message Batches run: the same whenever the run is planned again
    (a resumed run matches its results), unknown to anyone without SECRET_KEY."""
    return hmac.new(
        settings.SECRET_KEY.encode(), f"model-tier batch run {run_id}".encode(), hashlib.sha256
    ).digest()


def plan_client(
    client: Client,
    entries: Iterable[TimeEntry],
    *,
    config: Configuration,
    memory: dict[str, str],
    batch_size: int,
    dedupe: bool = True,
    secret: bytes | None = None,
) -> ClientPlan:
    """Group one client's entries by note and cut them into requests. With the same `secret`
    the same entries always give the same requests (references, known-answer items and their
    places included): the batch path relies on it. Without one, a random key is drawn."""
    secret = secret if secret is not None else secrets.token_bytes(32)
    groups: dict[str, NoteGroup] = {}
    no_note: list[int] = []
    for entry in sorted(entries, key=lambda e: e.id):
        key = entry.normalized_notes
        if not key:
            no_note.append(entry.id)
            continue
        if memory.get(key) == AMBIGUOUS:
            continue  # tier 3 holds this note for a reviewer; the model is not consulted
        group_key = key if dedupe else str(entry.id)
        if group_key in groups:
            groups[group_key].entry_ids.append(entry.id)
        else:
            groups[group_key] = NoteGroup(
                ref="", note=entry.notes, entry_ids=[entry.id], key=group_key
            )
    ordered = list(groups.values())
    alone = [[g] for g in ordered if g.suspicious]
    rest = [g for g in ordered if not g.suspicious]
    chunks = [rest[i : i + batch_size] for i in range(0, len(rest), max(1, batch_size))] + alone
    base = ClassificationPrompt(
        client_name=client.name,
        categories=_category_options(config),
        items=(),
        client_rules=_client_rules(client, config),
        examples=_examples(client.id),
    )
    pools = _canary_pools(client, config)
    requests = [
        _request(client.id, f"c{client.id}-{n}", base, chunk, pools, secret)
        for n, chunk in enumerate(chunks, start=1)
    ]
    return ClientPlan(requests=requests, no_note=no_note)


def one_by_one(request: PlannedRequest) -> list[PlannedRequest]:
    """The notes of a request whose answer failed the known-answer check, each in a request
    of its own (fresh references, fresh known-answer items), so whatever steered the model
    can only spoil the answer of the note that did it."""
    secret = secrets.token_bytes(32)
    return [
        _request(
            request.client_id,
            f"{request.custom_id}-{n}",
            request.prompt,
            [group],
            request.canary_pools,
            secret,
        )
        for n, group in enumerate(request.groups.values(), start=1)
    ]


def _request(
    client_id: int,
    custom_id: str,
    base: ClassificationPrompt,
    chunk: list[NoteGroup],
    pools: tuple[tuple[CategoryOption, ...], ...],
    secret: bytes,
) -> PlannedRequest:
    """One request: the chunk's notes under opaque references, the known-answer items mixed in
    at places drawn from the key."""
    groups = {}
    for group in chunk:
        ref = _opaque(secret, "item", custom_id, group.key)
        groups[ref] = replace(group, ref=ref)
    items = [NoteItem(ref, g.note) for ref, g in groups.items()]
    # Seeded from the secret key: unpredictable to a note's author, reproducible for a batch.
    rng = random.Random(_opaque(secret, "canaries", custom_id))
    canaries = []
    for n, pool in enumerate(pools):
        category = rng.choice(pool)
        ref = _opaque(secret, "canary", custom_id, str(n))
        items.insert(rng.randrange(len(items) + 1), NoteItem(ref, category.name))
        canaries.append(Canary(ref, category.key))
    prompt = replace(base, items=tuple(items), canaries=tuple(canaries))
    return PlannedRequest(client_id, custom_id, prompt, groups, pools)


def _opaque(secret: bytes, *parts: str) -> str:
    digest = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:REF_CHARS]


def _canary_pools(client: Client, config: Configuration) -> tuple[tuple[CategoryOption, ...], ...]:
    """The categories a known-answer item may be drawn from: those not billed to this client,
    and those billed, each pool only when not empty."""
    policy = config.policy(client.id)
    options = _category_options(config)
    not_billed = tuple(
        c for c in options if not c.billable or c.key in policy.non_billable_categories
    )
    billed = tuple(c for c in options if c not in not_billed)
    return tuple(pool for pool in (not_billed, billed) if pool)


def _category_options(config: Configuration) -> tuple[CategoryOption, ...]:
    return tuple(
        CategoryOption(key=c.key, name=c.name, billable=c.billable)
        for c in sorted(config.categories.values(), key=lambda c: c.key)
    )


def _client_rules(client: Client, config: Configuration) -> tuple[str, ...]:
    lines = []
    for rule in (
        ClassificationRule.objects.filter(client=client)
        .select_related("category", "project")
        .order_by("priority", "id")
    ):
        matchers = []
        if rule.task:
            matchers.append(f"task is '{rule.task}'")
        if rule.notes_regex:
            matchers.append(f"notes match /{rule.notes_regex}/")
        if rule.project_id:
            matchers.append(f"project is {rule.project}")
        lines.append(f"{' and '.join(matchers)} -> {rule.category.key}")
    policy = config.policy(client.id)
    if policy.non_billable_categories:
        lines.append(
            "not billed to this client: " + ", ".join(sorted(policy.non_billable_categories))
        )
    return tuple(lines)


def _examples(client_id: int) -> tuple[Example, ...]:
    """A few of the client's notes as reviewers decided them: their manual decisions first
    (the newest), then entries on approved invoices. Sorted by note, so the cached prompt
    prefix stays byte-identical while the examples do not change."""
    limit = settings.CLASSIFIER_MAX_EXAMPLES
    if limit <= 0:
        return ()
    manual = (
        Classification.objects.filter(entry__client_id=client_id, manual_category__isnull=False)
        .exclude(entry__normalized_notes="")
        .order_by("-manual_at", "-entry_id")
        .values_list(
            "entry__notes",
            "entry__normalized_notes",
            "manual_category__key",
            "manual_description",
            "description",
        )[: limit * 4]
    )
    approved = (
        Classification.objects.filter(
            entry__client_id=client_id,
            entry__invoice_links__is_live=True,
            entry__invoice_links__invoice__status=InvoiceStatus.APPROVED,
            category__isnull=False,
        )
        .exclude(entry__normalized_notes="")
        .order_by("-entry_id")
        .values_list(
            "entry__notes",
            "entry__normalized_notes",
            "category__key",
            "manual_description",
            "description",
        )[: limit * 4]
    )
    chosen: dict[str, Example] = {}
    for notes, normalized, key, manual_description, description in [*manual, *approved]:
        if normalized not in chosen and len(chosen) < limit:
            chosen[normalized] = Example(
                note=notes,
                category=key,
                description=manual_description or description or notes,
            )
    return tuple(sorted(chosen.values(), key=lambda e: (e.note, e.category)))
