"""Shared --period / --from / --to handling for billing commands."""

import datetime as dt

from django.core.management.base import CommandError

from invoices.drafting import Period


def add_period_arguments(parser) -> None:
    parser.add_argument("--period", help="a month, YYYY-MM (e.g. 2026-10)")
    parser.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", help="last day, YYYY-MM-DD")


def period_from_options(options) -> Period:
    month, start, end = options.get("period"), options.get("start"), options.get("end")
    try:
        if month and not (start or end):
            return Period.month(month)
        if start and end and not month:
            return Period(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    raise CommandError("give either --period YYYY-MM, or both --from and --to (YYYY-MM-DD)")
