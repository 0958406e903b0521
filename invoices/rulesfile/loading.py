"""YAML text -> a validated `RulesDocument`, or every problem in the file with its path.

Three passes, all of which always run so that one report lists everything:
1. YAML syntax (a syntax error stops here: there is nothing to look at after it);
2. the schema (`schema.py`), each field on its own;
3. references across the file (categories, people and projects that are named must be listed,
   names and keys unique, rates not overlapping). This pass reads the raw mapping leniently,
   field by field, so a typo in one field does not hide an unknown category in the next; only
   the overlap check needs a rate row that passed the schema as a whole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from invoices.core.rates import RateRow, find_overlaps
from invoices.rulesfile.errors import RulesError, RulesFileInvalid
from invoices.rulesfile.schema import (
    ClientRateSpec,
    FirmRateSpec,
    RulesDocument,
)

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


# The schema's deepest value is 6 levels down (the file, clients, a client, its rates, a rate,
# its amount); the limit leaves room for honest mistakes and stays far below Python's recursion
# limit, which PyYAML's recursive composer would otherwise hit with a raw RecursionError.
MAX_DEPTH = 100
SCHEMA_DEPTH = 6


class _TooDeep(yaml.MarkedYAMLError):
    pass


class _RulesLoader(yaml.SafeLoader):
    """SafeLoader that reads numbers with a fraction as Decimal, leaves dates as text for the
    schema to judge, refuses a key given twice in one mapping, and refuses nesting deeper than
    MAX_DEPTH where it starts."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(
                    problem=f"nested more than {MAX_DEPTH} levels deep; a rules file needs at "
                    f"most {SCHEMA_DEPTH}",
                    # PyYAML's stubs leave peek_event untyped.
                    problem_mark=self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML silently keeps the last of two equal keys: a second `rates:` under a client
        # would drop the first list without a word.
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen[key] = key_node
            except TypeError:
                pass  # unhashable key: the base class reports it
        return super().construct_mapping(node, deep=deep)


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | str:
    text = str(loader.construct_scalar(node))
    try:
        return Decimal(text.replace("_", ""))
    except InvalidOperation:
        return text  # .inf, .nan, 1:30.5: the schema says "not a number"


def _construct_timestamp_as_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


# Without the implicit timestamp resolver `2026-13-01` reaches the schema as text and is
# reported as "not a date" at its path; PyYAML would raise a bare ValueError while loading.
_RulesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RulesLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_RulesLoader.add_constructor(_TIMESTAMP_TAG, _construct_timestamp_as_text)


@dataclass(frozen=True)
class _Problem:
    loc: Loc
    message: str


def format_path(loc: Loc) -> str:
    """('clients', 1, 'rates', 0, 'from') -> 'clients[1].rates[0].from'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for a bad mapping key; the key is named
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_yaml(text: str) -> dict[str, Any]:
    """The file's top-level mapping, or RulesFileInvalid with the line and column."""
    try:
        data = yaml.load(text, Loader=_RulesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        if isinstance(exc, yaml.constructor.ConstructorError | _TooDeep):
            message = f"{where}{exc.problem}"
        else:
            message = f"{where}YAML syntax error: {exc.problem}"
        raise RulesFileInvalid([RulesError(path="", message=message)]) from None
    except yaml.YAMLError as exc:  # e.g. a control character: not marked with a line
        raise RulesFileInvalid([RulesError(path="", message=f"YAML error: {exc}")]) from None
    if data is None:
        raise RulesFileInvalid([RulesError(path="", message="the file is empty")])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise RulesFileInvalid(
            [
                RulesError(
                    path="",
                    message=f"the top level must be a mapping (firm:, categories:, ...), "
                    f"not {kind}",
                )
            ]
        )
    return data


def load_rules(text: str) -> RulesDocument:
    """Parse and validate a rules file; raises RulesFileInvalid listing every problem."""
    raw = parse_yaml(text)
    problems: list[_Problem] = []
    document: RulesDocument | None = None
    try:
        document = RulesDocument.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_Problem(tuple(e["loc"]), _plain_message(e)) for e in exc.errors())
    problems.extend(reference_problems(raw))
    if problems or document is None:
        raise RulesFileInvalid(_in_file_order(raw, problems))
    return document


def check_references(document: RulesDocument) -> None:
    """Raise RulesFileInvalid if the document's cross-references do not hold (for documents
    built in Python rather than by `load_rules`, which has checked them already)."""
    raw = document.model_dump(by_alias=True)
    problems = reference_problems(raw)
    if problems:
        raise RulesFileInvalid(_in_file_order(raw, problems))


# --- pydantic's errors in plain words -----------------------------------------------------

_PLAIN: dict[str, str] = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "must be text (quote it if it looks like a number, date or yes/no)",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "string_too_short": "must not be empty",
}


def _plain_message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "literal_error":
        # ctx["expected"] reads "'up', 'nearest' or 'down'"
        choices = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {choices}"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters"
    if kind == "greater_than_equal":
        return "must not be negative" if ctx["ge"] == 0 else f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "decimal_max_places":
        return f"at most {ctx['decimal_places']} decimal places"
    if kind == "decimal_max_digits":
        return f"at most {ctx['max_digits']} digits"
    if kind == "decimal_whole_digits":
        return f"at most {ctx['whole_digits']} digits before the decimal point"
    # Our own PydanticCustomErrors already carry a plain message; anything else is pydantic's
    # sentence, still readable.
    message = error["msg"]
    return message[:1].lower() + message[1:]


# --- references across the file ------------------------------------------------------------


def _items(raw: object, key: str) -> Iterator[tuple[int, object]]:
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, list):
        yield from enumerate(value)


def _valid(model: type[M], raw: object) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # its own problems are reported by the schema pass


def _text_field(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None


def _range_text(first: RateRow, second: RateRow) -> str:
    start = max(first.valid_from or dt.date.min, second.valid_from or dt.date.min)
    end = min(first.valid_to or dt.date.max, second.valid_to or dt.date.max)
    if start == dt.date.min and end == dt.date.max:
        return "all dates"
    lo = "open" if start == dt.date.min else start.isoformat()
    hi = "open" if end == dt.date.max else end.isoformat()
    return f"{lo}..{hi}"


def _unique(
    problems: list[_Problem], seen: dict[str, Loc], key: str, loc: Loc, what: str, shown: str
) -> None:
    if key in seen:
        problems.append(
            _Problem(loc, f"duplicate {what} {shown!r} (also {format_path(seen[key])})")
        )
    else:
        seen[key] = loc


def reference_problems(raw: dict[str, Any]) -> list[_Problem]:
    """Problems between parts of the file, read leniently from the raw mapping."""
    check = _ReferenceCheck()
    # What the file lists, whatever else is wrong with those items: a category whose name is
    # missing still exists as far as the rules naming it are concerned.
    check.list_categories(raw)
    check.list_people(raw)
    check.list_clients(raw)
    check.tax_codes(raw)
    # Then what the file's items name, in the order of the file's sections.
    check.rules(raw, ("rules",), None)
    check.prepare_rate_rows()
    for i, item in _items(raw, "rates"):
        check.rate(item, ("rates", i), None)
    for ci, client in _items(raw, "clients"):
        if isinstance(client, dict):
            check.client(ci, client)
    check.overlaps()
    return check.problems


@dataclass
class _ReferenceCheck:
    """The reference pass's state: what the file lists, and the problems found so far."""

    problems: list[_Problem] = field(default_factory=list)
    category_keys: dict[str, Loc] = field(default_factory=dict)
    emails: dict[str, Loc] = field(default_factory=dict)
    client_names: dict[str, Loc] = field(default_factory=dict)
    display_names: dict[int, str] = field(default_factory=dict)
    project_codes: dict[str, Loc] = field(default_factory=dict)  # casefolded code -> where
    code_owner: dict[str, int] = field(default_factory=dict)  # casefolded code -> client index
    # Rate rows for the overlap check: references become small ints (RateRow's ids) so that
    # `glx-shop` and `GLX-SHOP` are one target, as they are one project.
    rate_rows: list[RateRow] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)  # row path -> what it is for, in words
    rate_locs: dict[str, Loc] = field(default_factory=dict)
    project_ids: dict[str, int] = field(default_factory=dict)
    person_ids: dict[str, int] = field(default_factory=dict)
    tax_code_names: dict[str, Loc] = field(default_factory=dict)

    # --- what the file lists ----------------------------------------------------------------

    def list_categories(self, raw: object) -> None:
        for i, item in _items(raw, "categories"):
            if key := _text_field(item, "key"):
                loc = ("categories", i, "key")
                _unique(self.problems, self.category_keys, key, loc, "category key", key)

    def list_people(self, raw: object) -> None:
        for i, item in _items(raw, "people"):
            if email := _text_field(item, "email"):
                loc = ("people", i, "email")
                _unique(self.problems, self.emails, email.casefold(), loc, "email", email)

    def list_clients(self, raw: object) -> None:
        for ci, client in _items(raw, "clients"):
            self.display_names[ci] = _text_field(client, "name") or f"clients[{ci}]"
            if name := _text_field(client, "name"):
                loc = ("clients", ci, "name")
                _unique(self.problems, self.client_names, name.casefold(), loc, "client", name)
            self.list_projects(ci, client)

    def list_projects(self, ci: int, client: object) -> None:
        project_names: dict[str, Loc] = {}
        for pj, project in _items(client, "projects"):
            if code := _text_field(project, "code"):
                loc = ("clients", ci, "projects", pj, "code")
                _unique(
                    self.problems, self.project_codes, code.casefold(), loc, "project code", code
                )
                self.code_owner.setdefault(code.casefold(), ci)
            if pname := _text_field(project, "name"):
                loc = ("clients", ci, "projects", pj, "name")
                _unique(self.problems, project_names, pname.casefold(), loc, "project name", pname)

    def tax_codes(self, raw: object) -> None:
        """Billing semantics 12.1: each code once, and `applies_after` naming another listed
        code without a loop."""
        after: dict[str, str] = {}
        for i, item in _items(raw, "tax_codes"):
            if name := _text_field(item, "name"):
                loc = ("tax_codes", i, "name")
                _unique(self.problems, self.tax_code_names, name, loc, "tax code", name)
                if earlier := _text_field(item, "applies_after"):
                    after[name] = earlier
        for i, item in _items(raw, "tax_codes"):
            name, earlier = _text_field(item, "name"), _text_field(item, "applies_after")
            if name and earlier:
                self.tax_code_chain(name, earlier, after, ("tax_codes", i, "applies_after"))

    def tax_code_chain(self, name: str, earlier: str, after: dict[str, str], loc: Loc) -> None:
        if earlier not in self.tax_code_names:
            self.problems.append(_Problem(loc, f"unknown tax code {earlier!r} (not in tax_codes)"))
            return
        seen = [name]
        current: str | None = earlier
        while current is not None and current not in seen:
            seen.append(current)
            current = after.get(current)
        if current is not None:
            chain = " -> ".join([*seen, current])
            self.problems.append(_Problem(loc, f"tax code {name!r} applies after itself ({chain})"))

    def tax_code(self, name: str, loc: Loc) -> None:
        if name not in self.tax_code_names:
            listed = ", ".join(sorted(self.tax_code_names)) or "none"
            self.problems.append(
                _Problem(loc, f"unknown tax code {name!r} (tax_codes lists: {listed})")
            )

    # --- what the file's items name ---------------------------------------------------------

    def category(self, key: str, loc: Loc) -> None:
        if key not in self.category_keys:
            self.problems.append(_Problem(loc, f"unknown category {key!r}"))

    def person(self, email: str, loc: Loc) -> bool:
        if email.casefold() not in self.emails:
            self.problems.append(
                _Problem(loc, f"unknown person {email!r} (not listed under people)")
            )
            return False
        return True

    def project(self, code: str, loc: Loc, client: int | None) -> bool:
        owner = self.code_owner.get(code.casefold())
        if owner is None:
            where = f"a project of {self.display_names[client]}" if client is not None else "listed"
            self.problems.append(_Problem(loc, f"unknown project {code!r} (not {where})"))
            return False
        if client is not None and owner != client:
            self.problems.append(
                _Problem(
                    loc, f"project {code!r} belongs to {self.display_names[owner]}, not this client"
                )
            )
            return False
        return True

    def rules(self, container: object, prefix: Loc, client: int | None) -> None:
        # A rule is known by its matchers and category (the import updates it by them), so
        # two rules alike in those but their priority would be one row in the database.
        seen: dict[tuple[str, ...], Loc] = {}
        for r, item in _items(container, "rules"):
            if category := _text_field(item, "category"):
                self.category(category, (*prefix, r, "category"))
            if project := _text_field(item, "project"):
                self.project(project, (*prefix, r, "project"), client)
            matchers = (
                (_text_field(item, "task") or "").casefold(),
                _text_field(item, "notes_regex") or "",
                (project or "").casefold(),
            )
            if category and any(matchers):
                self.unique_rule(seen, (*matchers, category), (*prefix, r))

    def unique_rule(
        self, seen: dict[tuple[str, ...], Loc], identity: tuple[str, ...], loc: Loc
    ) -> None:
        if identity in seen:
            self.problems.append(
                _Problem(
                    loc,
                    f"duplicate rule: same matchers and category as {format_path(seen[identity])}",
                )
            )
        else:
            seen[identity] = loc

    def prepare_rate_rows(self) -> None:
        self.project_ids = {code: n for n, code in enumerate(self.project_codes)}
        self.person_ids = {email: n for n, email in enumerate(self.emails)}

    def rate(self, item: object, loc: Loc, client: int | None) -> None:
        ok = True
        if project := _text_field(item, "project"):
            ok = self.project(project, (*loc, "project"), client)
        if person := _text_field(item, "person"):
            ok = self.person(person, (*loc, "person")) and ok
        rate = _valid(FirmRateSpec, item) if client is None else _valid(ClientRateSpec, item)
        if rate is None or not ok:
            return  # already reported; an overlap on top of it would be noise
        self.add_rate_row(rate, loc, client)

    def add_rate_row(
        self, rate: FirmRateSpec | ClientRateSpec, loc: Loc, client: int | None
    ) -> None:
        project = getattr(rate, "project", None)
        parts = [
            f"{kind} {value}"
            for kind, value in (("project", project), ("person", rate.person), ("role", rate.role))
            if value is not None
        ]
        path = format_path(loc)
        self.rate_locs[path] = loc
        self.targets[path] = " + ".join(parts) or "client rate"
        self.rate_rows.append(
            RateRow(
                id=path,
                rate=rate.rate,
                client=client,
                project=self.project_ids[project.casefold()] if project is not None else None,
                person=self.person_ids[rate.person.casefold()] if rate.person is not None else None,
                role=rate.role or "",
                valid_from=rate.valid_from,
                valid_to=rate.valid_to,
            )
        )

    def client(self, ci: int, client: dict[str, Any]) -> None:
        listed = client.get("non_billable_categories")
        if isinstance(listed, list):
            for n, key in enumerate(listed):
                if isinstance(key, str) and key:
                    self.category(key, ("clients", ci, "non_billable_categories", n))
        for field_name in ("billing_codes", "rate_multipliers"):
            mapping = client.get(field_name)
            if isinstance(mapping, dict):
                for key in mapping:
                    if isinstance(key, str):
                        self.category(key, ("clients", ci, field_name, key))
        self.caps(ci, client)
        self.engagement_caps(ci, client)
        if tax_code := _text_field(client, "tax_code"):
            self.tax_code(tax_code, ("clients", ci, "tax_code"))
        for r, item in _items(client, "rates"):
            self.rate(item, ("clients", ci, "rates", r), ci)
        self.rules(client, ("clients", ci, "rules"), ci)

    def caps(self, ci: int, client: dict[str, Any]) -> None:
        capped: dict[str, Loc] = {}
        for c, item in _items(client, "caps"):
            if project := _text_field(item, "project"):
                loc = ("clients", ci, "caps", c, "project")
                if self.project(project, loc, ci):
                    _unique(self.problems, capped, project.casefold(), loc, "cap for", project)

    def engagement_caps(self, ci: int, client: dict[str, Any]) -> None:
        """Billing semantics 13.3: an engagement cap names one of the client's projects."""
        for c, item in _items(client, "engagement_caps"):
            if project := _text_field(item, "project"):
                self.project(project, ("clients", ci, "engagement_caps", c, "project"), ci)

    def overlaps(self) -> None:
        for first, second in find_overlaps(self.rate_rows):
            self.problems.append(
                _Problem(
                    self.rate_locs[str(second.id)],
                    f"overlaps {first.id} (both {self.targets[str(first.id)]}, "
                    f"{_range_text(first, second)})",
                )
            )


# --- ordering -----------------------------------------------------------------------------


def _position(raw: object, loc: Loc) -> tuple[int, ...]:
    """Where `loc` sits in the file: keys count in the order they were written."""
    positions = []
    node = raw
    for part in loc:
        if isinstance(node, dict):
            keys = list(node)
            if part in node:
                positions.append(keys.index(part))
                node = node[part]
                continue
            positions.append(len(keys))  # a missing key: after what is there
        elif isinstance(node, list) and isinstance(part, int):
            positions.append(part)
            if 0 <= part < len(node):
                node = node[part]
                continue
        break
    return tuple(positions)


def _in_file_order(raw: object, problems: list[_Problem]) -> list[RulesError]:
    # sorted() is stable: problems at one place keep the order they were found in.
    ordered = sorted(problems, key=lambda p: _position(raw, p.loc))
    unique: list[RulesError] = []
    for problem in ordered:
        error = RulesError(path=format_path(problem.loc), message=problem.message)
        if error not in unique:
            unique.append(error)
    return unique
