"""Pages written: each page planned (stored, held for a mapping, deleted, skipped), then
upserted in its own transaction with the run's counters and the announcement to billing, so a
stopped run keeps what it stored and a re-run finds it unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from timesheets.importing.service import EntryValues, IncomingEntry, UpsertCounts, upsert_entries
from timesheets.importing.values import format_seconds
from timesheets.models import (
    MAX_ENTRY_SECONDS,
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    ImportBatch,
    SyncRun,
    TrackerConnection,
)
from timesheets.sync.deletions import mark_gone
from timesheets.sync.mapping import RunMappings
from timesheets.sync.options import SyncOptions
from timesheets.sync.remote import RemoteEntry

MAX_ERROR_MESSAGES = 50

COUNTERS = (
    "pages",
    "fetched",
    "created",
    "updated",
    "deleted",
    "unchanged",
    "frozen",
    "held",
    "running_skipped",
    "errors",
)


@dataclass
class PagePlan:
    """What one page does, decided before anything is written."""

    incoming: list[IncomingEntry] = field(default_factory=list)
    held: list[tuple[RemoteEntry, ExternalPerson, ExternalProject]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    running: int = 0
    problems: list[str] = field(default_factory=list)


class PageWriter:
    """Writes one run's pages: plans each page, stores it, and keeps the run's counters, its
    import batch and the entries it could not store."""

    def __init__(
        self, conn: TrackerConnection, run: SyncRun, options: SyncOptions, mappings: RunMappings
    ) -> None:
        self.conn = conn
        self.run = run
        self.options = options
        self.mappings = mappings
        self.batch: ImportBatch | None = None
        self.has_held = False
        self.problems: list[str] = []  # entries that could not be stored
        # A frozen entry is reported once per run, however many listings of the run show it.
        self.frozen_seen: set[int] = set()

    def release_held(self) -> None:
        """Store the waiting entries whose user and project are now both mapped."""
        ready = list(
            HeldEntry.objects.filter(
                connection=self.conn,
                external_person__person__isnull=False,
                external_project__project__isnull=False,
            ).order_by("id")
        )
        size = self.options.page_size
        for start in range(0, len(ready), size):
            self.has_held = True
            chunk = [RemoteEntry.from_json(held.data) for held in ready[start : start + size]]
            self.store(chunk, label="entries released by new mappings", fetched=False)
        self.has_held = HeldEntry.objects.filter(connection=self.conn).exists()

    def plan(self, page: list[RemoteEntry]) -> PagePlan:
        live = [entry for entry in page if not entry.deleted]
        people = self.mappings.people(entry.user for entry in live)
        projects = self.mappings.projects(entry.project for entry in live)
        plan = PagePlan()
        for entry in page:
            if entry.deleted:
                plan.gone.append(entry.external_id)
                continue
            if self.conn.sync_from and entry.date < self.conn.sync_from:
                continue  # before the connection's first day: never stored
            if entry.running:
                plan.running += 1
                continue
            if not 0 <= entry.duration_seconds <= MAX_ENTRY_SECONDS:
                plan.problems.append(
                    f"entry {entry.external_id} of {entry.date}: duration "
                    f"{format_seconds(entry.duration_seconds)} is over 24 hours; correct it in "
                    "the tracker"
                )
                continue
            person = people[entry.user.external_id]
            project = projects[entry.project.external_id]
            if person.person is None or project.project is None:
                plan.held.append((entry, person, project))
                continue
            plan.incoming.append(
                IncomingEntry.of(
                    external_id=entry.external_id,
                    values=EntryValues(
                        person=person.person,
                        client=project.project.client,
                        project=project.project,
                        task=entry.task.strip()[:200],
                        date=entry.date,
                        start_time=entry.start_time,
                        duration_seconds=entry.duration_seconds,
                        notes=entry.notes,
                        tracker_billable=entry.billable,
                        tracker_invoiced=entry.invoiced,
                        tracker_approved=entry.approved,
                    ),
                    connection_id=self.conn.pk,
                    source_updated_at=entry.updated_at,
                )
            )
        return plan

    def store(self, page: list[RemoteEntry], *, label: str, fetched: bool) -> None:
        # One entry once per page, its last version (a tracker may repeat one across a page).
        page = list({entry.external_id: entry for entry in page}.values())
        counts = dict.fromkeys(COUNTERS, 0)
        with transaction.atomic():
            plan = self.plan(page)
            entry_ids: list[int] = []
            frozen_ids: list[int] = []
            if plan.incoming:
                outcome = upsert_entries(
                    source=self.conn.kind, incoming=plan.incoming, batch_for=self._batch_for
                )
                entry_ids += outcome.created_ids + outcome.updated_ids
                frozen_ids += self.first_seen(outcome.frozen_ids)
                counts["created"] = len(outcome.created_ids)
                counts["updated"] = len(outcome.updated_ids)
                counts["frozen"] = len(frozen_ids)
                counts["unchanged"] = outcome.unchanged
                if self.batch is not None:
                    ImportBatch.objects.filter(pk=self.batch.pk).update(
                        rows=F("rows") + len(plan.incoming),
                        created=F("created") + counts["created"],
                        updated=F("updated") + counts["updated"],
                        unchanged=F("unchanged") + counts["unchanged"],
                        frozen_changes=F("frozen_changes") + counts["frozen"],
                    )
            if plan.held:
                self._hold(plan.held)
            settled = [item.external_id for item in plan.incoming] + plan.gone
            if self.has_held and settled:
                HeldEntry.objects.filter(connection=self.conn, external_id__in=settled).delete()
            if plan.gone:
                deleted, frozen = mark_gone(self.conn, self.run, plan.gone)
                frozen = self.first_seen(frozen)
                entry_ids += deleted
                frozen_ids += frozen
                counts["deleted"] = len(deleted)
                counts["frozen"] += len(frozen)
            counts.update(
                pages=1 if fetched else 0,
                fetched=len(page) if fetched else 0,
                held=len(plan.held),
                running_skipped=plan.running,
                errors=len(plan.problems),
            )
            self.problems.extend(plan.problems)
            self.count(counts, progress=label, problems=plan.problems)
            self.announce(entry_ids, frozen_ids)

    def first_seen(self, frozen_ids: list[int]) -> list[int]:
        new = [entry_id for entry_id in frozen_ids if entry_id not in self.frozen_seen]
        self.frozen_seen.update(new)
        return new

    def _batch_for(self, counts: UpsertCounts) -> ImportBatch | None:
        """The run's ImportBatch (what new and changed entries point to), made when first
        needed: a run that changes nothing leaves no batch behind."""
        if self.batch is None and (counts.created or counts.updated or counts.frozen):
            self.batch = ImportBatch.objects.create(
                source=self.conn.kind,
                filename=f"sync: {self.conn.name} (run {self.run.pk})"[:255],
                sha256="",
            )
            SyncRun.objects.filter(pk=self.run.pk).update(import_batch=self.batch)
        return self.batch

    def _hold(self, held: list[tuple[RemoteEntry, ExternalPerson, ExternalProject]]) -> None:
        now = timezone.now()
        HeldEntry.objects.bulk_create(
            [
                HeldEntry(
                    connection=self.conn,
                    external_id=entry.external_id,
                    external_person=person,
                    external_project=project,
                    date=entry.date,
                    data=entry.to_json(),
                    fetched_at=now,
                )
                for entry, person, project in held
            ],
            update_conflicts=True,
            unique_fields=["connection", "external_id"],
            update_fields=["external_person", "external_project", "date", "data", "fetched_at"],
        )
        self.has_held = True

    def count(self, counts: dict[str, int], *, progress: str, problems: Sequence[str] = ()) -> None:
        for name, value in counts.items():
            setattr(self.run, name, getattr(self.run, name) + value)
        update: dict[str, Any] = {name: F(name) + value for name, value in counts.items() if value}
        update["progress"] = f"{progress}: {self.run.pages} pages, {self.run.fetched} entries read"[
            :300
        ]
        if problems:
            update["error_messages"] = (list(self.run.error_messages) + list(problems))[
                -MAX_ERROR_MESSAGES:
            ]
            self.run.error_messages = update["error_messages"]
        SyncRun.objects.filter(pk=self.run.pk).update(**update)

    def announce(self, entry_ids: list[int], frozen_ids: list[int]) -> None:
        """Enqueued in the page's transaction: the task exists exactly when the page does."""
        if entry_ids or frozen_ids:
            async_task(
                "timesheets.tasks.announce_synced_entries",
                entry_ids=entry_ids,
                frozen_entry_ids=frozen_ids,
                sync_run_id=self.run.pk,
                batch_id=self.batch.pk if self.batch else None,
                q_options={"group": f"sync-{self.conn.pk}"},
            )
