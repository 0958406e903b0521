"""The import streams a file in chunks (timesheets.importing.streaming): the same entries and
errors as a file read whole, nothing kept of a refused file even when chunks were written,
and a stream is never read whole."""

import io

import pytest

from tests.test_csv_import import assert_nothing_stored, harvest_bytes, harvest_row, northwind
from timesheets.importing import ImportRejected, RowError, import_file
from timesheets.importing.reading import READ_BYTES
from timesheets.models import TimeEntry

__all__ = ["northwind"]  # the fixture, used by name

HOURS_HINT = (
    "correct the entry in the tracker, or split it into entries of at most 24 hours, and "
    "export again"
)


@pytest.fixture
def small_chunks(settings):
    settings.IMPORT_CHUNK_ROWS = 2


def rows(count, **values):
    return [harvest_row(Notes=f"call {n}", **values) for n in range(count)]


def test_a_row_error_after_written_chunks_stores_nothing(northwind, small_chunks):
    file_rows = rows(5)
    file_rows[4] = harvest_row(Hours="30:00")
    file_rows[0] = harvest_row(Date="2026-02-30")
    with pytest.raises(ImportRejected) as raised:
        import_file(name="late.csv", content=harvest_bytes(*file_rows))
    assert [(error.row, error.column) for error in raised.value.errors] == [
        (2, "Date"),
        (6, "Hours"),
    ]
    assert_nothing_stored()


def test_chunks_reimport_and_edits_as_one_file(northwind, small_chunks):
    content = harvest_bytes(*rows(5), *rows(2))  # two rows repeat: occurrences across chunks
    first = import_file(name="a.csv", content=content)
    assert (first.rows, first.created) == (7, 7)
    again = import_file(name="a.csv", content=content)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 7)

    edited = rows(5) + rows(2)
    edited[6] = harvest_row(Notes="call 1", Hours="0.50")
    result = import_file(name="a.csv", content=harvest_bytes(*edited))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 6)
    assert TimeEntry.objects.count() == 7
    assert TimeEntry.objects.filter(duration_seconds=1800).count() == 1


class NoWholeReads(io.BytesIO):
    """A stream that fails any read of more than one block (such as read() of it all)."""

    largest = 0

    def _check(self, size):
        assert 0 < size <= READ_BYTES, f"read({size})"
        self.largest = max(self.largest, size)

    def read(self, size=-1):
        self._check(size if size is not None else -1)
        return super().read(size)

    def read1(self, size=-1):
        self._check(size)
        return super().read1(size)


def test_a_stream_is_read_in_blocks_never_whole(northwind):
    content = harvest_bytes(*[harvest_row(Notes=f"call {n} " + "x" * 600) for n in range(4000)])
    assert len(content) > 2 * READ_BYTES
    stream = NoWholeReads(content)
    assert import_file(name="big.csv", stream=stream).created == 4000
    assert 0 < stream.largest <= READ_BYTES


def test_a_refusal_lists_the_first_thousand_errors_and_counts_the_rest(northwind):
    content = harvest_bytes(*rows(1200, Hours="30:00"))
    with pytest.raises(ImportRejected) as raised:
        import_file(name="bad.csv", content=content)
    errors = raised.value.errors
    assert len(errors) == 1001
    assert errors[0] == RowError(
        None,
        None,
        "the file has 1,200 errors; the first 1,000 are listed",
        "correct these and import the file again to see the rest",
    )
    assert [error.row for error in errors[1:]] == list(range(2, 1002))
    assert errors[1].hint == HOURS_HINT
    assert_nothing_stored()
