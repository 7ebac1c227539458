"""The data side of `longread batch`: read a questions file, resume an answers file, write answers.

What it does:
- `read_questions` reads JSON lines (`.jsonl`, `.json`, `.ndjson`: one object per line with
  `question`, optional `doc` and `id`) or CSV (`.csv`: a header row with a `question` column,
  optional `doc` and `id` columns) and yields a `BatchQuestion` per good line and a `BadLine`
  per malformed one, so one typo never stops a run of hundreds. A file it cannot read at all
  (unknown extension, no `question` column, not UTF-8) raises `BatchInputError` at the call,
  before anything is answered.
- `answered_ids` and `open_output` make a run resumable: the answers file is JSON lines, one
  line per answered question, each written whole, flushed and fsynced by `BatchWriter`. A kill
  can leave only a torn last line; `answered_ids` ignores it and `open_output` cuts it off
  before appending, so the file stays valid JSON lines.
- `BatchProgress` turns counts and times into a rate and an ETA (pure).

What it does not do: answer questions, resolve `doc` references to documents, or print
anything; the CLI does those. It reads a questions file whole (they are small) but streams
the answers file, which can be large. It imports only the standard library and engine
errors.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from engine.errors import EngineError

JSON_LINES_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})
CSV_SUFFIXES = frozenset({".csv"})
CSV_DELIMITERS = (",", "\t", ";", "|")
"""Candidates, in order of preference (a one-column header fits them all)."""

_NO_DELIMITER = "\x1f"
_TAIL_BLOCK = 64 * 1024


class BatchInputError(EngineError):
    """A questions or answers file that `longread batch` cannot use; the message says the fix."""


@dataclass(frozen=True)
class BatchQuestion:
    """One question of a batch. `line` is where it starts in the file (1-based).

    `id` is the one the file gave, else `line-<n>`: stable across runs of the same file, so
    a resumed run recognizes the questions it has already answered.
    """

    line: int
    question: str
    doc: str | None
    id: str


@dataclass(frozen=True)
class BadLine:
    """A line of the questions file that was skipped, and why (written for the user)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


# --- reading questions ---------------------------------------------------------------------


def read_questions(path: Path) -> Iterator[BatchQuestion | BadLine]:
    """Questions of `path` in file order, with a `BadLine` for each malformed line.

    Blank lines are skipped. Ids must be unique within the file (a resumed run matches
    answers to questions by id); a repeated one is a `BadLine`. Raises `BatchInputError`
    now, not on first iteration, when the file as a whole cannot be read.
    """
    suffix = path.suffix.lower()
    if suffix not in JSON_LINES_SUFFIXES | CSV_SUFFIXES:
        raise BatchInputError(
            f"{path} is not a questions file longread can read (extension {path.suffix!r}). "
            "Use JSON lines (.jsonl: one object per line, e.g. "
            '{"question": "...", "doc": "...", "id": "q1"}) or CSV (.csv with a header row '
            "naming a `question` column, optionally `doc` and `id`)."
        )
    text = _read_text(path)
    # newline="" splits records on \n, \r\n and \r only: str.splitlines would also break at
    # U+2028 and friends, which are legal inside a JSON string or a CSV field.
    stream = io.StringIO(text, newline="")
    if suffix in CSV_SUFFIXES:
        rows = _csv_rows(path, stream)
    else:
        if text.lstrip().startswith("["):
            raise BatchInputError(
                f"{path} holds a JSON array; longread batch reads JSON lines. "
                "Write one question object per line, without the surrounding [ ]."
            )
        rows = _json_rows(stream)
    return _unique_ids(rows)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BatchInputError(f"There is no questions file at {path}; check the path.") from None
    except OSError as error:
        raise BatchInputError(f"Cannot read the questions file {path}: {error}.") from None
    try:
        # utf-8-sig drops the BOM that spreadsheet programs put in front of exported CSV.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BatchInputError(
            f"{path} is not UTF-8 (byte {error.start} cannot be decoded). "
            "Save it as UTF-8 (in a spreadsheet: CSV UTF-8) and run again."
        ) from None


def _unique_ids(rows: Iterator[BatchQuestion | BadLine]) -> Iterator[BatchQuestion | BadLine]:
    first_line: dict[str, int] = {}
    for row in rows:
        if isinstance(row, BatchQuestion):
            if row.id in first_line:
                yield BadLine(
                    row.line,
                    f"id {row.id!r} is already used on line {first_line[row.id]}; "
                    "give every question its own id so answers can be matched to questions",
                )
                continue
            first_line[row.id] = row.line
        yield row


def _json_rows(stream: io.StringIO) -> Iterator[BatchQuestion | BadLine]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield BadLine(number, f"not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(value, dict):
            yield BadLine(
                number,
                f'expected a JSON object like {{"question": "..."}}, got {_json_kind(value)}',
            )
            continue
        yield _question(number, value.get("question"), value.get("doc"), value.get("id"))


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), "true/false" if isinstance(value, bool) else "null")


def _question(
    number: int, question: object, doc: object, given_id: object
) -> BatchQuestion | BadLine:
    """Validate one record's fields; blank `doc` and `id` count as absent in both formats."""
    if question is None:
        return BadLine(number, "no `question`")
    if not isinstance(question, str):
        return BadLine(number, "`question` must be a string")
    if not question.strip():
        return BadLine(number, "`question` is empty")
    if doc is not None and not isinstance(doc, str):
        return BadLine(number, "`doc` must be a string (a document title, id or path)")
    # bool is a subclass of int, and `"id": true` is surely a mistake, not the id "True".
    if given_id is not None and (isinstance(given_id, bool) or not isinstance(given_id, str | int)):
        return BadLine(number, "`id` must be a string or a whole number")
    id_text = str(given_id).strip() if given_id is not None else ""
    doc_text = doc.strip() if doc is not None else ""
    return BatchQuestion(
        line=number,
        question=question.strip(),
        doc=doc_text or None,
        id=id_text or f"line-{number}",
    )


def _csv_rows(path: Path, stream: io.StringIO) -> Iterator[BatchQuestion | BadLine]:
    header_line, header_text = 0, ""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            header_line, header_text = number, line
            break
    delimiter, columns, width = _csv_header(path, header_text)
    return _csv_records(
        stream,
        delimiter,
        header_line,
        width,
        columns["question"],
        columns.get("doc"),
        columns.get("id"),
    )


def _csv_header(path: Path, header_text: str) -> tuple[str, dict[str, int], int]:
    """The delimiter, the known columns' positions and the column count, from the header alone.

    Not `csv.Sniffer`: it guesses from the data rows, whose free-text questions are full of
    commas and quotes, and it gives up on one-column files. Column names are plain words:
    only the true delimiter splits off a field that is exactly `question`.
    """
    best: tuple[str, list[str]] | None = None
    for delimiter in CSV_DELIMITERS:
        names = [
            name.strip().lower()
            for name in next(csv.reader([header_text], delimiter=delimiter), [])
        ]
        if "question" in names:
            best = (delimiter, names)
            break
    if best is None:
        raise BatchInputError(
            f"{path} has no `question` column. Its first row must be a header naming the "
            "columns, e.g. `id,doc,question` (`doc` and `id` are optional)."
        )
    delimiter, names = best
    if len(names) == 1:
        # A lone `question` column is a list of questions, whose commas are text: split on a
        # control character no one types, so only quotes keep their CSV meaning.
        delimiter = _NO_DELIMITER
    columns: dict[str, int] = {}
    for position, name in enumerate(names):
        if name in ("question", "doc", "id"):
            if name in columns:
                raise BatchInputError(
                    f"{path} has two `{name}` columns in its header; rename or remove one."
                )
            columns[name] = position
    return delimiter, columns, len(names)


def _csv_records(
    stream: io.StringIO,
    delimiter: str,
    header_line: int,
    width: int,
    question_at: int,
    doc_at: int | None,
    id_at: int | None,
) -> Iterator[BatchQuestion | BadLine]:
    reader = csv.reader(stream, delimiter=delimiter)
    consumed = 0
    while True:
        # A quoted field may span lines: a record starts one past where the previous ended.
        start = header_line + consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            consumed = reader.line_num
            yield BadLine(start, f"not valid CSV ({error})")
            continue
        consumed = reader.line_num
        if not any(field.strip() for field in fields):
            continue
        if len(fields) > width:
            # Most often an unquoted delimiter inside a question, which would cut it short.
            yield BadLine(
                start,
                f"{len(fields)} fields but the header has {width}; put a field that contains "
                f"{delimiter!r} in double quotes",
            )
            continue
        yield _question(
            start,
            _field(fields, question_at),
            _field(fields, doc_at),
            _field(fields, id_at),
        )


def _field(fields: list[str], at: int | None) -> str | None:
    return fields[at] if at is not None and at < len(fields) else None


# --- resuming and writing answers ----------------------------------------------------------


def answered_ids(output: Path) -> set[str]:
    """Ids of the records already in the answers file `output`; empty when it does not exist.

    A last line without its newline was cut short by a kill and does not count (the question
    is answered again). A complete line that is not a JSON object with an `id` is skipped
    too, for the same reason: answering twice is safe, skipping an unanswered question is not.
    """
    ids: set[str] = set()
    try:
        handle = output.open("rb")
    except FileNotFoundError:
        return ids
    except OSError as error:
        raise BatchInputError(
            f"Cannot read the answers file {output}: {error}. Choose another -o path."
        ) from None
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw)
            except ValueError:  # also UnicodeDecodeError
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str | int):
                ids.add(str(record["id"]))
    return ids


def repair_torn_tail(output: Path) -> int:
    """Cut a last line left without its newline off `output`; the number of bytes removed.

    A missing file is left missing (0). The writer ends every record with a newline, so
    anything after the last newline is a record a kill interrupted.
    """
    try:
        handle = output.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        keep = 0
        # Scan back block by block: an answers file can be large, a torn line is short.
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            handle.seek(start)
            block = handle.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        if keep == size:
            return 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


class BatchWriter:
    """Appends one answer record per line to an answers file, each durable once written.

    Opening repairs a torn last line first (`torn_bytes` says how much was cut), so appended
    records never glue onto half a record. Use as a context manager; `open_output` is the
    usual way in.
    """

    def __init__(self, output: Path) -> None:
        self.path = output
        try:
            self.torn_bytes = repair_torn_tail(output)
            self._file = output.open("ab")
        except OSError as error:
            raise BatchInputError(
                f"Cannot write the answers file {output}: {error}. "
                "Choose another -o path, or create its folder first."
            ) from None

    def write(self, record: Mapping[str, Any]) -> None:
        """Write `record` as one JSON line, `id` first; flushed and fsynced before returning.

        Raises ValueError for a record without an `id` or holding NaN/infinity (which strict
        JSON readers such as jq reject), TypeError for a value JSON cannot hold.
        """
        if "id" not in record:
            raise ValueError("a batch answer record needs an `id`")
        ordered = {"id": str(record["id"])} | {k: v for k, v in record.items() if k != "id"}
        text = json.dumps(ordered, ensure_ascii=False, allow_nan=False)
        # ensure_ascii=False leaves U+2028/U+2029 raw, and line splitters such as Python's
        # str.splitlines break lines there; escaped they stay one line for every reader.
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        # One write of the whole line: a kill leaves whole records plus at most one torn tail.
        self._file.write(text.encode("utf-8") + b"\n")
        self._file.flush()
        # flush() is enough to survive a kill; fsync also survives a power cut.
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_output(output: Path) -> BatchWriter:
    """A `BatchWriter` appending to `output` (created if missing), its torn tail repaired."""
    return BatchWriter(output)


# --- progress ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch run stands: `done` of `total` questions after `elapsed_s` seconds.

    Counts are for this run only (a resumed run's total excludes questions answered before),
    so the rate is not inflated by answers it did not produce.
    """

    done: int
    total: int
    elapsed_s: float

    def __post_init__(self) -> None:
        if self.done < 0 or self.total < 0 or self.elapsed_s < 0:
            raise ValueError(f"progress cannot be negative: {self}")

    @classmethod
    def measure(cls, done: int, total: int, started: float, now: float) -> BatchProgress:
        """Progress from two readings of one clock (use `time.monotonic()`, not wall time)."""
        return cls(done=done, total=total, elapsed_s=max(0.0, now - started))

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.done)

    @property
    def per_minute(self) -> float | None:
        """Questions answered per minute; None before the first answer gives a rate."""
        if self.done == 0 or self.elapsed_s <= 0:
            return None
        return self.done * 60.0 / self.elapsed_s

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds to finish at the rate so far; None while there is no rate."""
        if self.remaining == 0:
            return 0.0
        rate = self.per_minute
        return None if rate is None else self.remaining * 60.0 / rate
