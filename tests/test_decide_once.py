"""Decide once, apply everywhere (billing semantics 2.3, revised; issue 16): a reviewer's
decision is memory at once for the client's identical notes, similar notes follow when their
closest decided notes agree, and the review queue resolves a (client, note) group in one POST.
Real PostgreSQL, Django's test client; no mocks."""

import datetime as dt
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from invoices.classification import (
    SimilarMemorySettingRefused,
    classify_entries,
    client_near_matches,
    entries_to_classify,
)
from invoices.core.memory import (
    AMBIGUOUS,
    DecidedNote,
    SimilarMemory,
    build_client_memory,
    mask_notes,
    near_matches,
    person_name_tokens,
    similarity,
)
from invoices.drafting import Period, draft_invoices
from invoices.models import Classification, ClassificationRule, Invoice, InvoiceEntry
from invoices.review import correct_entry
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db
OCTOBER = Period.month("2026-10")
PASSWORD = "a-long-test-password"


@pytest.fixture
def month():
    """Acme and Globex in October, with notes no rule decides (the only rule is on task
    "Dev"): three Acme "sync w/ client" twins (one the tracker calls non-billable), one
    Globex twin, and notes for similar memory."""
    make.firm()
    meeting = make.category("client-meeting")
    internal = make.category("internal-meeting", billable=False)
    dev = make.category("development")
    make.rule(dev, task="Dev")
    acme, globex = make.client("Acme"), make.client("Globex")
    acme_project, globex_project = make.project(acme, "ACME"), make.project(globex, "GLX")
    ana = make.person("Ana Pereira", "Partner")
    sam = make.person("Sam Lee", "Consultant")
    make.rate("200.00", role="Partner")
    make.rate("100.00", role="Consultant")

    def note(text, *, project=acme_project, who=ana, minutes=60, billable=True, day=5):
        return make.entry(
            project,
            who,
            day=dt.date(2026, 10, day),
            minutes=minutes,
            notes=text,
            task="Other",
            billable=billable,
        )

    entries = {
        "sync": note("sync w/ client"),
        "sync_twin": note("Sync w/ client!", who=sam, day=6),
        "sync_free": note("sync w/ client", billable=False, day=7),
        "sync_globex": note("sync w/ client", project=globex_project),
        "procurement": note("touch base w/ procurement", minutes=30),
        "touch_sam": note("touch base w/ Sam", minutes=30, day=8),
        "misc": note("misc", minutes=30, day=9),
    }
    draft_invoices(period=OCTOBER)
    return {
        **entries,
        "meeting": meeting,
        "internal": internal,
        "dev": dev,
        "acme": acme,
        "globex": globex,
        "acme_project": acme_project,
        "ana": ana,
        "sam": sam,
        "note": note,
    }


@pytest.fixture
def reviewer():
    return User.objects.create_superuser("rita", "rita@example.com", PASSWORD)


def classification(entry) -> Classification:
    return Classification.objects.get(entry=entry)


def html_of(response) -> str:
    return response.content.decode()


# --- invoices.core.memory: pure, no database ---------------------------------------------------

NAMES = person_name_tokens(["Sam Lee", "Ana Pereira", "J. Doe"])


@pytest.mark.parametrize(
    "notes, masked",
    [
        ("touch base w/ Sam", "touch base with ~"),
        ("touch base w/ procurement", "touch base with procurement"),  # lower case: a word
        ("Call with Jordan Blake re budget", "call with ~ re budget"),  # one name, two words
        ("sam: review PR 123", "~ review pr #"),
        ("Review 2026-10-05 and 10/06, Oct 7", "review @ and @"),  # runs collapse
        ("Tuesday standup", "@ standup"),
        ("may need a second pass", "may need a second pass"),  # "may" is a verb here
        ("w/Sam sync!!", "with ~ sync"),
        ("", ""),
    ],
)
def test_masking_replaces_names_numbers_and_dates(notes, masked):
    assert mask_notes(notes, NAMES) == masked


def test_person_name_tokens_leave_out_initials():
    assert NAMES == {"sam", "lee", "ana", "pereira", "doe"}


@pytest.mark.parametrize(
    "a, b, score",
    [
        ("touch base with ~", "touch base with procurement", D("0.937")),
        ("client sync", "sync client", D("1.000")),  # word order does not count
        # A subset is not a perfect match (token-set ratio would say 1.0): token-sort ratio.
        ("meeting", "internal meeting", D("0.608")),
        ("", "anything", D("0")),
    ],
)
def test_similarity_is_the_masked_token_set_ratio_rounded_down(a, b, score):
    assert similarity(a, b) == score


def decided(*rows):
    return [DecidedNote(notes.lower(), notes, category) for notes, category in rows]


def test_similar_memory_decides_when_the_closest_notes_agree():
    memory = SimilarMemory(
        decided(("touch base w/ procurement", "meeting"), ("sprint planning", "pm")),
        names=NAMES,
    )
    outcome = memory.match("touch base w/ Sam")
    assert (outcome.category, outcome.notes, outcome.score) == (
        "meeting",
        "touch base w/ procurement",
        D("0.937"),
    )
    assert outcome.label == "similar to 'touch base w/ procurement' (0.937)"
    assert memory.match("quarterly tax filing").category is None


def test_similar_memory_never_rounds_a_score_up_over_the_threshold():
    """0.9375 is 0.937 at 3 places: a 0.9375 threshold is not reached."""
    memory = SimilarMemory(
        decided(("touch base w/ procurement", "meeting")), names=NAMES, threshold=D("0.9375")
    )
    assert memory.match("touch base w/ Sam").category is None
    assert (
        SimilarMemory(
            decided(("touch base w/ procurement", "meeting")), names=NAMES, threshold=D("0.937")
        )
        .match("touch base w/ Sam")
        .category
        == "meeting"
    )


def test_similar_memory_holds_a_note_whose_closest_notes_disagree_within_the_margin():
    memory = SimilarMemory(
        decided(("call w/ Sam re budget", "meeting"), ("call w/ Ana re budget", "internal")),
        names=NAMES,
    )
    outcome = memory.match("call w/ Ben re budget")
    assert outcome.category is None
    assert outcome.reason.startswith("similar notes disagree: 'call w/ Sam re budget' (1.000)")
    ambiguous = SimilarMemory(decided(("call w/ Sam re budget", AMBIGUOUS)), names=NAMES)
    assert "disagreeing history" in ambiguous.match("call w/ Ben re budget").reason


def test_near_matches_give_the_three_closest_decided_notes_for_the_models_prompt():
    memory = SimilarMemory(
        decided(
            ("weekly status call", "meeting"),
            ("weekly status report", "pm"),
            ("status report", "pm"),
            ("bugfix pagination", "development"),
            ("old note", AMBIGUOUS),
        ),
        names=NAMES,
    )
    near = near_matches("weekly status meeting", memory)
    assert [(m.notes, m.category) for m in near] == [
        ("weekly status call", "meeting"),
        ("weekly status report", "pm"),
        ("status report", "pm"),
    ]
    assert near[0].score == D("0.838") and memory.match("weekly status meeting").category is None


def test_the_most_recent_decision_wins_over_approved_history_and_earlier_decisions():
    memory = build_client_memory(
        approved=[("misc", "misc", "development"), ("misc", "Misc.", "travel")],
        decisions=[("misc", "misc", "pm"), ("misc", "misc", "meeting")],
    )
    assert memory["misc"] == "meeting"
    history_only = build_client_memory(
        approved=[("misc", "misc", "development"), ("misc", "Misc.", "travel")], decisions=[]
    )
    assert history_only["misc"] == AMBIGUOUS
    assert build_client_memory(approved=[], decisions=[], similar_threshold=None).similar is None


# --- A reviewer's decision is memory at once -------------------------------------------------


def test_deciding_one_note_resolves_its_identical_twins_of_the_same_client_only(month, reviewer):
    correct_entry(entry=month["sync"], user=reviewer, category=month["meeting"])

    twin = classification(month["sync_twin"])
    assert (twin.category, twin.tier, twin.confidence) == (month["meeting"], "memory", D("1.000"))
    assert (twin.needs_review, twin.billable) == (False, True)
    assert twin.manual_category is None  # memory, not a copied manual decision
    stranger = classification(month["sync_globex"])
    assert (stranger.category, stranger.needs_review) == (None, True)  # another client's note


def test_the_twins_follow_in_the_decisions_transaction_even_without_a_rebuild(month, reviewer):
    """A twin on another draft (November) follows at once, and that draft is marked stale."""
    november = make.entry(
        month["acme_project"],
        month["ana"],
        day=dt.date(2026, 11, 2),
        notes="sync w/ client",
        task="Other",
    )
    draft_invoices(period=Period.month("2026-11"))
    november_draft = Invoice.objects.get(period_start=dt.date(2026, 11, 1))
    assert "stale" not in november_draft.flags

    correct_entry(entry=month["sync"], user=reviewer, category=month["meeting"])

    assert classification(november).tier == "memory"
    november_draft.refresh_from_db()
    assert "stale" in november_draft.flags


def test_an_entrys_own_decision_wins_over_memory_and_the_latest_decision_is_memory(month, reviewer):
    correct_entry(entry=month["sync_twin"], user=reviewer, category=month["internal"])
    correct_entry(entry=month["sync"], user=reviewer, category=month["meeting"])

    own = classification(month["sync_twin"])
    assert (own.category, own.tier) == (month["internal"], "manual")
    later = month["note"]("sync w/ client", day=20)
    classify_entries(entries_to_classify(entry_ids=[later.id]))
    assert (classification(later).category, classification(later).tier) == (
        month["meeting"],
        "memory",
    )


def test_the_latest_decision_is_memory_and_taking_it_back_unteaches_it(month, reviewer):
    later = month["note"]("misc", day=21)
    correct_entry(entry=month["misc"], user=reviewer, category=month["meeting"])
    assert classification(later).category == month["meeting"]
    correct_entry(entry=month["misc"], user=reviewer, category=month["dev"])
    assert classification(later).category == month["dev"]
    # Taking the decision back un-teaches it: the twin is pending again.
    correct_entry(entry=month["misc"], user=reviewer, category=None, billable=None)
    assert (classification(later).category, classification(later).needs_review) == (None, True)


def test_a_tracker_non_billable_twin_takes_the_category_and_stays_non_billable(month, reviewer):
    correct_entry(entry=month["sync"], user=reviewer, category=month["meeting"], billable=True)

    free = classification(month["sync_free"])
    assert (free.category, free.tier, free.billable) == (month["meeting"], "memory", False)


# --- Similar memory ---------------------------------------------------------------------------


def test_similar_memory_decides_a_note_that_differs_only_in_a_name(month, reviewer):
    correct_entry(entry=month["procurement"], user=reviewer, category=month["meeting"])

    similar = classification(month["touch_sam"])
    assert (similar.category, similar.tier, similar.needs_review) == (
        month["meeting"],
        "memory",
        False,
    )
    assert D("0.85") <= similar.confidence < 1
    assert similar.memory_note == "touch base w/ procurement"
    assert similar.review_reason == f"similar to 'touch base w/ procurement' ({similar.confidence})"


def test_similar_memory_is_a_setting(month, reviewer, settings):
    settings.SIMILAR_MEMORY_ENABLED = False
    correct_entry(entry=month["procurement"], user=reviewer, category=month["meeting"])
    similar = classification(month["touch_sam"])
    assert (similar.category, similar.needs_review, similar.memory_note) == (None, True, "")


def test_two_near_notes_that_disagree_leave_the_entry_pending(month, reviewer):
    note = month["note"]
    budget_sam, budget_ana = note("call w/ Sam re budget"), note("call w/ Ana re budget")
    pending = note("call w/ Ben re budget", day=12)
    correct_entry(entry=budget_sam, user=reviewer, category=month["meeting"])
    correct_entry(entry=budget_ana, user=reviewer, category=month["internal"])

    held = classification(pending)
    assert (held.category, held.needs_review, held.memory_note) == (None, True, "")
    assert "similar notes disagree" in held.review_reason
    assert "call w/ Sam re budget" in held.review_reason
    assert "call w/ Ana re budget" in held.review_reason


def test_a_tracker_non_billable_entry_decided_by_similar_memory_stays_non_billable(month, reviewer):
    free = month["note"]("touch base w/ Ana", billable=False, day=14)
    correct_entry(entry=month["procurement"], user=reviewer, category=month["meeting"])

    decided = classification(free)
    assert (decided.category, decided.tier, decided.billable) == (
        month["meeting"],
        "memory",
        False,
    )
    assert decided.memory_note == "touch base w/ procurement"


# --- The review queue, grouped by (client, note) -----------------------------------------------


def queue_url(month_text="2026-10"):
    return reverse("admin:invoices_classification_queue") + f"?month={month_text}"


def test_the_queue_lists_pending_groups_with_counts_largest_value_first(client, month, reviewer):
    client.force_login(reviewer)
    html = html_of(client.get(queue_url()))

    # Acme's "sync w/ client": two billable entries pending (the non-billable one never is),
    # 2 h: Ana 200.00 + Sam 100.00 = 300.00 at stake.
    assert 'data-group="Acme|sync w client"' in html
    assert 'data-count="2"' in html and "300.00" in html
    assert "Ana Pereira" in html and "Sam Lee" in html
    assert html.index('data-group="Acme|sync w client"') < html.index(
        'data-group="Acme|touch base w procurement"'
    )
    assert html.index('data-group="Acme|misc"') > html.index('data-group="Acme|sync w client"')
    assert 'data-group="Globex|sync w client"' in html


def test_one_post_resolves_a_group_and_leaves_the_draft_stale_until_rebuilt(
    client, month, reviewer
):
    client.force_login(reviewer)
    draft = Invoice.objects.get(client=month["acme"])
    before = draft.total
    response = client.post(
        reverse("admin:invoices_classification_queue_decide"),
        {
            "month": "2026-10",
            "client": month["acme"].pk,
            "note": "sync w client",
            "category": month["meeting"].pk,
            "billable": "",
            "description": "Weekly client sync",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "2 entries of Acme decided" in html_of(response)
    for key in ("sync", "sync_twin"):
        decided = classification(month[key])
        assert (decided.manual_category, decided.tier, decided.needs_review) == (
            month["meeting"],
            "manual",
            False,
        )
        assert decided.manual_description == decided.description == "Weekly client sync"
    assert classification(month["sync_globex"]).needs_review  # Globex's group is its own
    draft.refresh_from_db()
    assert "stale" in draft.flags and draft.total == before
    assert "stale: rebuild" in html_of(response)

    response = client.post(
        reverse("admin:invoices_classification_queue_rebuild"), {"month": "2026-10"}, follow=True
    )
    assert "1 stale draft rebuilt" in html_of(response)
    draft.refresh_from_db()
    assert "stale" not in draft.flags
    assert draft.total == before + D("300.00")
    assert InvoiceEntry.objects.get(entry=month["sync_twin"]).line_id is not None


def test_a_group_decision_needs_a_post_and_the_classification_permission(client, month):
    viewer = User.objects.create_user("vic", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_classification"))
    client.force_login(viewer)
    url = reverse("admin:invoices_classification_queue_decide")
    data = {"month": "2026-10", "client": month["acme"].pk, "note": "sync w client"}
    assert client.post(url, {**data, "category": month["meeting"].pk}).status_code == 403
    assert classification(month["sync"]).manual_category is None


def test_a_group_decision_without_a_category_or_not_billable_changes_nothing(
    client, month, reviewer
):
    client.force_login(reviewer)
    response = client.post(
        reverse("admin:invoices_classification_queue_decide"),
        {"month": "2026-10", "client": month["acme"].pk, "note": "sync w client"},
        follow=True,
    )
    assert "choose a category, or mark the entries not billable" in html_of(response)
    assert classification(month["sync"]).manual_category is None


def test_make_this_a_rule_proposes_the_shared_task_or_an_escaped_pattern_and_saves_on_confirm(
    client, month, reviewer
):
    client.force_login(reviewer)
    url = reverse("admin:invoices_classification_queue_rule")
    data = {
        "month": "2026-10",
        "client": month["acme"].pk,
        "note": "sync w client",
        "category": month["meeting"].pk,
    }
    # The group's entries share the task "Other": that is the first proposal, and the
    # preview shows it would catch every Acme "Other" entry of the month, not only the note.
    html = html_of(client.post(url, data))
    assert "with the task <strong>Other</strong>" in html
    assert "matches <strong>6</strong>" in html

    html = html_of(client.post(url, {**data, "kind": "notes"}))
    pattern = r"(?i)^\W*sync\W+w\W+client\W*$"
    assert pattern in html
    assert "matches <strong>3</strong>" in html  # the non-billable twin too; not Globex's
    assert ClassificationRule.objects.filter(client=month["acme"]).count() == 0

    response = client.post(url, {**data, "kind": "notes", "confirm": "1"}, follow=True)
    saved = ClassificationRule.objects.get(client=month["acme"])
    assert (saved.notes_regex, saved.category, saved.task) == (pattern, month["meeting"], "")
    assert f"Classification rule #{saved.pk} saved" in html_of(response)
    assert classification(month["sync_twin"]).rule_id == saved.pk
    assert "stale: rebuild" in html_of(response)


def test_the_classifications_list_decides_selected_entries_in_bulk(client, month, reviewer):
    client.force_login(reviewer)
    url = reverse("admin:invoices_classification_changelist")
    chosen = {
        "action": "decide_selected",
        "_selected_action": [month["misc"].pk, month["sync_globex"].pk],
    }
    page = html_of(client.post(url, chosen))
    assert "Decide 2 entries" in page
    assert classification(month["misc"]).manual_category is None  # the page asks first

    response = client.post(
        url, {**chosen, "apply": "1", "category": month["meeting"].pk, "billable": "unknown"}
    )
    assert response.status_code == 302
    for key in ("misc", "sync_globex"):
        assert (classification(month[key]).tier, classification(month[key]).category) == (
            "manual",
            month["meeting"],
        )
    assert classification(month["sync"]).needs_review  # Acme's note is not Globex's

    client.post(url, {"action": "mark_not_billable", "_selected_action": [month["sync"].pk]})
    decided = classification(month["sync"])
    assert (decided.manual_billable, decided.billable, decided.needs_review) == (
        False,
        False,
        False,
    )
    # A decision naming no category is no memory: the twin still waits for one.
    assert classification(month["sync_twin"]).needs_review


def test_near_matches_of_a_client_for_the_model_tier(month, reviewer):
    correct_entry(entry=month["procurement"], user=reviewer, category=month["meeting"])
    near = client_near_matches(client_id=month["acme"].pk, notes="quarterly touch base prep")
    assert [(m.notes, m.category) for m in near] == [
        ("touch base w/ procurement", "client-meeting")
    ]
    assert near[0].score < D("0.85")
    assert client_near_matches(client_id=month["globex"].pk, notes="touch base w/ Sam") == []


@pytest.mark.parametrize("value", ["abc", "0", "1.5", "NaN"])
def test_a_bad_similar_memory_threshold_is_named(month, settings, value):
    settings.SIMILAR_MEMORY_THRESHOLD = value
    with pytest.raises(SimilarMemorySettingRefused, match="SIMILAR_MEMORY_THRESHOLD must be"):
        classify_entries(entries_to_classify(entry_ids=[month["misc"].id]))
