"""Random month-end histories on the real PostgreSQL, checked after every step (issue 10).

A hypothesis state machine plays an ops team over two months: time is tracked at the source
(added, edited, deleted, marked invoiced there), exported and imported as Harvest CSV (the
after-commit classification may or may not run in between: a crash or a backlog), reviewers
correct entries and release holds, rules change, drafts are built, read and approved with what
the reviewer saw, voided, and pushed to the fake QuickBooks with lost responses and forgotten
request ids. After every step:

- I1 every billable, decided entry is on at most one live invoice, and on exactly one or listed
  as unbilled (or held) with a reason; an entry on an approved invoice is locked;
- I2 every approved invoice still has the lines, links and total it had when approved, which
  were what its entries said then and what the reviewer saw;
- I3 the fake QuickBooks never holds two open invoices for one entry;
- I4 every invoice's totals add up from its lines;
- I5 approved invoice numbers are gapless.

`SIMULATION_HISTORIES` and `SIMULATION_STEPS` make a longer run on demand:
    SIMULATION_HISTORIES=300 SIMULATION_STEPS=80 bin/test tests/test_month_end_simulation.py -s
"""

import csv
import io
import os
import random
import re
import sys
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from invoices import quickbooks as qbo_service
from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.classification import classify_entries, entries_to_classify
from invoices.drafting import Period, draft_invoices
from invoices.models import (
    Cap,
    CustomerMapping,
    Invoice,
    InvoiceEntry,
    InvoiceLine,
    ItemMapping,
)
from invoices.quickbooks import pushing
from invoices.quickbooks.errors import PushRefused
from invoices.review import CorrectionRefused, correct_entry, release_hold
from invoices.unbilled import unbilled_entries
from tests import billing_fixtures as make
from tests.fakes import serving
from tests.fakes.quickbooks_server import FakeQuickBooks, FakeServer, Handler
from tests.test_quickbooks import connect
from timesheets.importing.service import import_file
from timesheets.models import TimeEntry
from timesheets.sync.deletions import mark_gone

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HISTORIES = int(os.environ.get("SIMULATION_HISTORIES", "40"))
STEPS = int(os.environ.get("SIMULATION_STEPS", "60"))
MONTHS = [Period.month("2026-10"), Period.month("2026-11")]
CLIENTS = ["Acme", "Globex"]
PEOPLE = [("Ana", "Pereira", "Partner"), ("Ben", "Okafor", "Associate")]
# What a note is, and so how the rules classify it: billable work, internal time, or a note
# no rule knows (pending review until a reviewer decides it).
KINDS = {"work": ("Dev", "drafted the motion"), "internal": ("Admin", "team standup")}
KINDS["vague"] = ("Misc", "misc")
# One change at the source: (what, month, day, person, kind of note, tenths of an hour).
CHANGE = st.tuples(
    st.sampled_from(["track", "track", "edit", "invoice"]),
    st.integers(0, 1),
    st.integers(1, 28),
    st.integers(0, 1),
    st.sampled_from(["work", "work", "work", "internal", "vague"]),
    st.integers(1, 80),
)
RULES: dict[str, int] = {}  # steps per rule, printed at the end
COUNTS = {"steps": 0, "histories": 0, "approved": 0, "refused": 0, "pushed": 0, "voided": 0}


def harvest_csv(rows):
    header = ["Date", "Client", "Project", "Project Code", "Task", "Notes", "Hours"]
    header += ["Billable?", "Invoiced?", "First Name", "Last Name"]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        first, last, _ = PEOPLE[row["person"]]
        task, notes = KINDS[row["kind"]]
        client = CLIENTS[row["client"]]
        writer.writerow(
            [
                row["day"].isoformat(),
                client,
                f"{client} work",
                client.upper()[:3],
                task,
                notes,
                f"{row['hours']:.2f}",
                "Yes",
                "Yes" if row["invoiced"] else "No",
                first,
                last,
            ]
        )
    return buffer.getvalue().encode()


class MonthEnd(RuleBasedStateMachine):
    @initialize(acme=st.lists(CHANGE, min_size=2, max_size=8), globex=st.lists(CHANGE, max_size=6))
    def set_up(self, acme, globex):
        """The firm, its clients and QuickBooks; every history then starts with time tracked
        and imported, so later steps have drafts to read, approve, void and push."""
        # Each history runs in a savepoint of the test's transaction, rolled back at teardown.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.server = serving.serving(FakeQuickBooks(), Handler, server_class=FakeServer)
        self.fake = self.server.__enter__()
        self._point_at_fake()
        make.firm()
        self.dev = make.category("development")
        self.internal = make.category("internal-meeting", billable=False)
        self.clients = [
            make.client("Acme", rounding_increment_minutes=6),
            make.client("Globex", discount_percent=D("10")),
        ]
        self.projects = [
            make.project(c, c.name.upper()[:3], name=f"{c.name} work") for c in self.clients
        ]
        Cap.objects.create(client=self.clients[1], project=self.projects[1], amount=D("2000.00"))
        self.people = [make.person(f"{first} {last}", role) for first, last, role in PEOPLE]
        make.rate("200.00", role="Partner")
        make.rate("150.00", role="Associate")
        make.rule(self.dev, task="Dev")
        self.internal_rule = make.rule(self.internal, notes_regex=r"(?i)standup")
        self.user = User.objects.create_superuser("approver", "a@example.com", "x")
        connect(self.fake)
        for client in self.clients:
            CustomerMapping.objects.create(
                client=client,
                qbo_customer_id=self.fake.add_customer(client.name),
                qbo_display_name=client.name,
            )
        for category in (self.dev, self.internal):
            ItemMapping.objects.create(
                category=category,
                qbo_item_id=self.fake.add_item(category.name),
                qbo_item_name=category.name,
            )
        qbo_service.set_default_item(
            item_id=self.fake.add_item("Adjustments"), item_name="Adjustments"
        )
        self.source = {}  # (client, person, day) -> the row as the tracker has it
        self.seen = {}  # invoice id -> (drafted_at, total) as a reviewer last read it
        self.approved = {}  # invoice id -> what it was at approval
        COUNTS["histories"] += 1
        self.tracker_activity(0, acme, export=True, after_commit_runs=True)
        self.tracker_activity(1, globex, export=True, after_commit_runs=True)

    def _point_at_fake(self):
        from django.conf import settings as django_settings

        self.saved = {
            name: getattr(django_settings, name, None)
            for name in (
                "BILLABLES_ENCRYPTION_KEYS",
                "QBO_CLIENT_ID",
                "QBO_CLIENT_SECRET",
                "QBO_ENVIRONMENT",
                "QBO_API_BASE_URL",
                "QBO_TIMEOUT_SECONDS",
                "QBO_REQUESTS_PER_MINUTE",
                "QBO_RETRY_BASE_SECONDS",
                "QBO_RETRY_MAX_SECONDS",
            )
        }
        # Plain http to the local fake (the OAuth library refuses it otherwise).
        self.saved_transport = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        django_settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        django_settings.QBO_CLIENT_ID = self.fake.client_id
        django_settings.QBO_CLIENT_SECRET = self.fake.client_secret
        django_settings.QBO_ENVIRONMENT = f"{self.fake.base_url}/.well-known/openid_configuration"
        django_settings.QBO_API_BASE_URL = f"{self.fake.base_url}/v3"
        django_settings.QBO_TIMEOUT_SECONDS = (2, 2)
        django_settings.QBO_REQUESTS_PER_MINUTE = 600_000
        django_settings.QBO_RETRY_BASE_SECONDS = 0
        django_settings.QBO_RETRY_MAX_SECONDS = 0
        self.saved_sleep, pushing._sleep = pushing._sleep, lambda seconds: None

    def teardown(self):
        from django.conf import settings as django_settings

        if hasattr(self, "atomic"):
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)
        if hasattr(self, "server"):
            self.server.__exit__(None, None, None)
            for name, value in self.saved.items():
                setattr(django_settings, name, value)
            pushing._sleep = self.saved_sleep
            if self.saved_transport is None:
                os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
            else:
                os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = self.saved_transport

    def _step(self):
        COUNTS["steps"] += 1
        rule_name = sys._getframe(1).f_code.co_name
        RULES[rule_name] = RULES.get(rule_name, 0) + 1

    # --- at the source ------------------------------------------------------------------

    @rule(
        client=st.integers(0, 1),
        changes=st.lists(CHANGE, min_size=1, max_size=4),
        export=st.booleans(),
        after_commit_runs=st.booleans(),
    )
    def tracker_activity(self, client, changes, export, after_commit_runs):
        """Time tracked, edited or invoiced at the source; then, maybe, an export of the
        client's rows is imported (what runs after its commit does not: see below)."""
        self._step()
        for change, month, day, person, kind, tenths in changes:
            key = (client, person, MONTHS[month].start.replace(day=day))
            row = self.source.get(key)
            if change == "track" and row is None:
                self.source[key] = {
                    "client": client,
                    "person": person,
                    "day": key[2],
                    "kind": kind,
                    "hours": D(tenths) / 10,
                    "invoiced": False,
                }
            elif row is not None and change == "edit":
                row["hours"] = D(tenths) / 10
            elif row is not None and change == "invoice":
                row["invoiced"] = True
        if export:
            self._import(client)
        if after_commit_runs:  # else: a crash, a worker timeout, a month-end queue backlog
            classify_entries(entries_to_classify())

    @precondition(lambda self: self.source)
    @rule(pick=st.integers(0, 10**6))
    def delete_at_source(self, pick):
        """The sync notices the entry gone from the tracker (CSV cannot say so)."""
        self._step()
        key = sorted(self.source)[pick % len(self.source)]
        del self.source[key]
        stored = self._stored(key)
        if stored is not None:
            mark_gone(SimpleNamespace(kind="harvest"), SimpleNamespace(pk=None), [stored])

    def _stored(self, key):
        client, person, day = key
        return (
            TimeEntry.all_objects.filter(
                client=self.clients[client], person=self.people[person], date=day
            )
            .values_list("external_id", flat=True)
            .first()
        )

    def _import(self, client):
        rows = [row for row in self.source.values() if row["client"] == client]
        if rows:
            import_file(name="export.csv", content=harvest_csv(rows))

    # --- review ----------------------------------------------------------------------

    @rule(month=st.integers(0, 1), read=st.booleans())
    def draft(self, month, read):
        """Drafts built (the Draft button classifies first); a reviewer may read them."""
        self._step()
        for invoice in draft_invoices(period=MONTHS[month]).invoices:
            if read:
                self.seen[invoice.pk] = (invoice.drafted_at.isoformat(), invoice.total)

    @rule(pick=st.integers(0, 10**6), month=st.integers(0, 1))
    def approve_what_was_read(self, pick, month):
        """An approver approves a draft read earlier (other steps may have changed it since),
        or reads one of the month now (drafting it first if nobody did) and approves it."""
        self._step()
        if not self.seen:
            period = MONTHS[month]
            drafts = list(
                Invoice.objects.filter(status="draft", period_start=period.start).order_by("id")
            )
            drafts = drafts or draft_invoices(period=period).invoices
            if not drafts:
                return
            draft = drafts[pick % len(drafts)]
            self.seen[draft.pk] = (draft.drafted_at.isoformat(), draft.total)
        invoice_id = sorted(self.seen)[pick % len(self.seen)]
        seen_at, seen_total = self.seen.pop(invoice_id)
        invoice = Invoice.objects.filter(pk=invoice_id).first()
        if invoice is None:
            return
        try:
            with transaction.atomic():
                approved = approve_invoice(
                    invoice=invoice,
                    user=self.user,
                    seen_drafted_at=seen_at,
                    seen_total=seen_total,
                )
        except InvalidTransition:
            COUNTS["refused"] += 1
            return
        COUNTS["approved"] += 1
        assert approved.total == seen_total  # I2: what the reviewer saw
        links = list(InvoiceEntry.objects.filter(invoice=approved).select_related("entry"))
        for link in links:  # I2: what the entries said at approval
            assert link.entry.duration_seconds == link.raw_seconds, link
            assert link.entry.content_hash == link.content_hash, link
            assert link.entry.deleted_at is None and link.state != "pending"
        self.approved[approved.pk] = self._snapshot(approved)

    def _snapshot(self, invoice):
        return {
            "total": invoice.total,
            "lines": list(
                InvoiceLine.objects.filter(invoice=invoice)
                .order_by("position")
                .values_list("id", "quantity", "unit_price", "amount")
            ),
            "links": sorted(
                InvoiceEntry.objects.filter(invoice=invoice).values_list(
                    "entry_id", "state", "raw_seconds", "billed_seconds"
                )
            ),
        }

    @rule(pick=st.integers(0, 10**6), internal=st.booleans(), pending_first=st.booleans())
    def reviewer_corrects(self, pick, internal, pending_first):
        """A reviewer decides an entry: mostly one waiting for review, sometimes any."""
        self._step()
        entries = TimeEntry.objects.filter(classification__isnull=False).order_by("id")
        if pending_first and entries.filter(classification__needs_review=True).exists():
            entries = entries.filter(classification__needs_review=True)
        ids = list(entries.values_list("id", flat=True))
        if not ids:
            return
        entry = TimeEntry.objects.get(pk=ids[pick % len(ids)])
        try:
            correct_entry(
                entry=entry, user=self.user, category=self.internal if internal else self.dev
            )
        except CorrectionRefused:
            assert TimeEntry.objects.get(pk=entry.pk).locked

    @rule(pick=st.integers(0, 10**6), internal=st.booleans())
    def reviewer_prepares_a_draft(self, pick, internal):
        """A reviewer takes a draft, decides each entry waiting on it, rebuilds it and reads
        it, ready to approve (later steps may still change it before the approval)."""
        self._step()
        drafts = list(Invoice.objects.filter(status="draft").order_by("id"))
        if not drafts:
            return
        draft = drafts[pick % len(drafts)]
        category = self.internal if internal else self.dev
        for link in draft.entry_links.filter(state="pending").select_related("entry"):
            try:
                correct_entry(entry=link.entry, user=self.user, category=category)
            except CorrectionRefused:  # deleted at the source meanwhile: the rebuild drops it
                assert TimeEntry.all_objects.get(pk=link.entry_id).deleted_at is not None
        for invoice in draft_invoices(
            period=Period(draft.period_start, draft.period_end), client_ids=[draft.client_id]
        ).invoices:
            self.seen[invoice.pk] = (invoice.drafted_at.isoformat(), invoice.total)

    @rule(pick=st.integers(0, 10**6))
    def reviewer_releases_a_hold(self, pick):
        self._step()
        held = list(TimeEntry.objects.filter(tracker_invoiced=True, locked=False).order_by("id"))
        if held:
            release_hold(entry=held[pick % len(held)], user=self.user)

    @rule(to_internal=st.booleans())
    def rule_edited(self, to_internal):
        self._step()
        self.internal_rule.category = self.internal if to_internal else self.dev
        self.internal_rule.save()

    @rule(pick=st.integers(0, 10**6))
    def void(self, pick):
        self._step()
        # Mostly approved invoices found wrong; a draft is voided only now and then.
        approved = list(Invoice.objects.filter(status="approved").order_by("id"))
        live = approved or list(Invoice.objects.filter(status="draft").order_by("id"))[:1]
        if not live or (not approved and pick % 4):
            return
        invoice = live[pick % len(live)]
        try:
            with transaction.atomic():
                void_invoice(invoice=invoice, user=self.user, reason="simulation")
        except InvalidTransition:
            return
        COUNTS["voided"] += 1
        self.approved.pop(invoice.pk, None)

    # --- QuickBooks --------------------------------------------------------------------

    @rule(pick=st.integers(0, 10**6), lose_response=st.booleans(), forget=st.booleans())
    def push(self, pick, lose_response, forget):
        self._step()
        approved = list(Invoice.objects.filter(status="approved").order_by("id"))
        if not approved:
            return
        invoice = approved[pick % len(approved)]
        try:
            row = qbo_service.request_push(invoice=invoice, user=self.user)
        except PushRefused:
            return
        self.fake.switches.drop_invoice_responses = 1 if lose_response else 0
        self.fake.switches.forget_dropped_request_ids = forget
        pushed = qbo_service.push(push_id=row.pk)
        self.fake.switches.drop_invoice_responses = 0
        # Every push of this simulation must reach the fake; a refusal is a finding.
        assert pushed.status in ("pushed", "mismatch"), (pushed.status, pushed.last_error)
        COUNTS["pushed"] += 1

    @rule(pick=st.integers(0, 10**6), lose_response=st.booleans())
    def void_in_quickbooks(self, pick, lose_response):
        """Someone voids here an invoice that is in QuickBooks, and asks for it to be voided
        there too (the task runs; its answer may be lost and the task re-run)."""
        self._step()
        voided = [
            invoice
            for invoice in Invoice.objects.filter(status="void").order_by("id")
            if qbo_service.open_push(invoice) is not None
        ]
        if not voided:
            return
        try:
            row = qbo_service.void_in_quickbooks(invoice=voided[pick % len(voided)], user=self.user)
        except PushRefused:
            return
        self.fake.switches.drop_void_responses = 1 if lose_response else 0
        qbo_service.void_pushed_invoice(push_id=row.pk, user_id=self.user.pk)
        self.fake.switches.drop_void_responses = 0
        qbo_service.void_pushed_invoice(push_id=row.pk, user_id=self.user.pk)  # re-delivered

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def i1_billable_time_is_billed_once_or_listed(self):
        if not hasattr(self, "clients"):
            return
        decided = set(
            TimeEntry.objects.filter(
                classification__billable=True, classification__needs_review=False
            ).values_list("id", flat=True)
        )
        live = {}
        for entry_id, state, status in InvoiceEntry.objects.filter(is_live=True).values_list(
            "entry_id", "state", "invoice__status"
        ):
            assert entry_id not in live, f"entry {entry_id} is on two live invoices"
            live[entry_id] = (state, status)
        listed = {entry.pk: entry.unbilled_reason for entry in unbilled_entries()}
        for entry_id in decided:
            assert entry_id in live or listed.get(entry_id), f"entry {entry_id} bills nowhere"
        locked = set(TimeEntry.all_objects.filter(locked=True).values_list("id", flat=True))
        on_approved = {e for e, (_, status) in live.items() if status == "approved"}
        assert locked == on_approved

    @invariant()
    def i2_approved_invoices_are_what_was_approved(self):
        for invoice_id, snapshot in getattr(self, "approved", {}).items():
            invoice = Invoice.objects.get(pk=invoice_id)
            assert invoice.status == "approved"
            assert self._snapshot(invoice) == snapshot

    @invariant()
    def i3_quickbooks_never_holds_two_open_invoices_for_one_entry(self):
        if not hasattr(self, "fake"):
            return
        owners = {}
        for qbo_invoice in self.fake.open_invoices().values():
            number = re.match(r"billables (\S+) ", qbo_invoice.get("PrivateNote", ""))
            assert number, qbo_invoice.get("PrivateNote")
            invoice = Invoice.objects.get(number=number.group(1))
            for entry_id in invoice.entry_links.exclude(state="held").values_list(
                "entry_id", flat=True
            ):
                assert entry_id not in owners, (
                    f"entry {entry_id} is on open QuickBooks invoices {owners.get(entry_id)} "
                    f"and {qbo_invoice['Id']}"
                )
                owners[entry_id] = qbo_invoice["Id"]

    @invariant()
    def i4_totals_add_up(self):
        if not hasattr(self, "clients"):
            return
        for invoice in Invoice.objects.exclude(status="void").prefetch_related("lines"):
            lines = list(invoice.lines.all())
            by_kind = {}
            for line in lines:
                by_kind[line.kind] = by_kind.get(line.kind, D(0)) + line.amount
                if line.kind == "time":
                    exact = line.quantity * line.unit_price
                    assert line.amount == exact.quantize(D("0.01"), ROUND_HALF_UP), line
            assert invoice.subtotal == by_kind.get("time", D(0))
            assert invoice.adjustments == by_kind.get("cap", D(0))
            assert invoice.discount == by_kind.get("discount", D(0))
            assert invoice.total == sum(by_kind.values(), D(0)) >= 0

    @invariant()
    def i5_numbers_are_gapless(self):
        if not hasattr(self, "clients"):
            return
        numbers = sorted(
            int(number.rsplit("-", 1)[1])
            for number in Invoice.objects.exclude(number=None).values_list("number", flat=True)
        )
        assert numbers == list(range(1, len(numbers) + 1))


def test_month_end_histories_keep_every_invariant():
    MonthEnd.TestCase.settings = settings(
        max_examples=HISTORIES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    # A fixed seed by default (the same histories every run; seed 11 plays a rich mix of
    # approvals, voids and pushes); SIMULATION_SEED=<n> plays others.
    random.seed(int(os.environ.get("SIMULATION_SEED", "11")))
    COUNTS.update({name: 0 for name in COUNTS})
    RULES.clear()
    MonthEnd.TestCase().runTest()
    print(
        f"\nmonth-end simulation: {COUNTS['histories']} histories, {COUNTS['steps']} steps; "
        f"{COUNTS['approved']} approvals ({COUNTS['refused']} refused), {COUNTS['voided']} voids, "
        f"{COUNTS['pushed']} pushes; steps per rule: {dict(sorted(RULES.items()))}"
    )
    assert COUNTS["steps"] >= HISTORIES
