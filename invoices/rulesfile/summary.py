"""What an import did, per kind of row: the summary the command prints."""

from __future__ import annotations

from dataclasses import dataclass, field


class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deleted} deleted"
        )


@dataclass
class ApplySummary:
    """What an import did, per kind of row."""

    firm: str = "unchanged"  # or "updated"
    categories: Tally = field(default_factory=Tally)
    people: Tally = field(default_factory=Tally)
    clients: Tally = field(default_factory=Tally)
    projects: Tally = field(default_factory=Tally)
    policies: Tally = field(default_factory=Tally)
    rules: Tally = field(default_factory=Tally)
    rates: Tally = field(default_factory=Tally)
    billing_codes: Tally = field(default_factory=Tally)
    rate_multipliers: Tally = field(default_factory=Tally)
    caps: Tally = field(default_factory=Tally)
    tax_codes: Tally = field(default_factory=Tally)
    # Billing semantics 13: fixed fees and milestones, retainers, engagement caps.
    engagements: Tally = field(default_factory=Tally)
    # Kept because time entries may point at them, but worth a look.
    people_not_in_file: list[str] = field(default_factory=list)
    clients_not_in_file: list[str] = field(default_factory=list)
    projects_not_in_file: list[str] = field(default_factory=list)
    # Rows in the file's scope that it does not list, by kind (the labels of `lines()`):
    # kept, or deleted when `pruned`.
    not_in_file: dict[str, list[str]] = field(default_factory=dict)
    pruned: bool = False
    # Existing rules deleted and created anew to keep the file's order of trial.
    rules_recreated: list[str] = field(default_factory=list)
    dry_run: bool = False

    def changed(self) -> bool:
        tallies = (
            self.categories,
            self.people,
            self.clients,
            self.projects,
            self.policies,
            self.rules,
            self.rates,
            self.billing_codes,
            self.rate_multipliers,
            self.caps,
            self.tax_codes,
            self.engagements,
        )
        return self.firm != "unchanged" or any(t.created or t.updated or t.deleted for t in tallies)

    def lines(self) -> list[str]:
        out = [
            f"firm: {self.firm}",
            f"categories: {self.categories}",
            f"people: {self.people}",
            f"clients: {self.clients}",
            f"projects: {self.projects}",
            f"client policies: {self.policies}",
            f"classification rules: {self.rules}",
            f"rates: {self.rates}",
            f"billing codes: {self.billing_codes}",
            f"rate multipliers: {self.rate_multipliers}",
            f"caps: {self.caps}",
        ]
        if self.tax_codes.created or self.tax_codes.updated or self.tax_codes.unchanged:
            out.insert(1, f"tax codes: {self.tax_codes}")
        e = self.engagements
        if e.created or e.updated or e.unchanged or e.deleted:
            out.append(f"fixed fees, milestones, retainers and engagement caps: {e}")
        for label, names in (
            ("people", self.people_not_in_file),
            ("clients", self.clients_not_in_file),
            ("projects", self.projects_not_in_file),
        ):
            if names:
                out.append(f"{label} not in the file, kept unchanged: {', '.join(names)}")
        verdict = "deleted" if self.pruned else "kept (--prune deletes them)"
        for label, names in self.not_in_file.items():
            if names:
                out.append(f"{label} not in the file, {verdict}: {', '.join(names)}")
        if self.rules_recreated:
            out.append(
                "classification rules re-created so that rules of equal priority are tried in "
                f"the order of the file: {', '.join(self.rules_recreated)}"
            )
        if self.dry_run:
            out.append("dry run: the file is valid; nothing was saved")
        return out
