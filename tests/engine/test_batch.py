"""Batch data side: reading questions files, resuming and writing answers, rate and ETA."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.batch import (
    BadLine,
    BatchInputError,
    BatchProgress,
    BatchQuestion,
    answered_ids,
    open_output,
    read_questions,
    repair_torn_tail,
)
from engine.errors import USER_ERRORS, EngineError


def _write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _questions(path: Path) -> list[BatchQuestion]:
    """All rows of `path`, which must all be good questions."""
    rows = list(read_questions(path))
    good = [row for row in rows if isinstance(row, BatchQuestion)]
    assert good == rows, [row for row in rows if isinstance(row, BadLine)]
    return good


# --- JSON lines ---------------------------------------------------------------------------


def test_jsonl_questions_with_ids_docs_and_blank_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        '{"question": "Who is Ahab?", "doc": "moby.epub", "id": "q1"}\n'
        "\n"
        '{"question": "  Where does it end?  ", "id": 7, "extra": [1, 2]}\n'
        "   \n"
        '{"question": "Any whales?"}\n',
    )
    assert list(read_questions(path)) == [
        BatchQuestion(line=1, question="Who is Ahab?", doc="moby.epub", id="q1"),
        BatchQuestion(line=3, question="Where does it end?", doc=None, id="7"),
        BatchQuestion(line=5, question="Any whales?", doc=None, id="line-5"),
    ]


def test_jsonl_with_bom_and_crlf_and_ndjson_suffix(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "Q.NDJSON",
        '{"question": "é?"}\r\n{"question": "b\u2028c?"}\r\n',
        bom=True,
    )
    # U+2028 inside a JSON string is one line, not two.
    assert [(q.line, q.question) for q in _questions(path)] == [(1, "é?"), (2, "b\u2028c?")]


def test_bad_jsonl_lines_are_reported_and_good_ones_still_come(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.json",
        '{"question": "first?"}\n'
        "{not json\n"
        '["question", "x"]\n'
        '{"doc": "a.pdf"}\n'
        '{"question": ""}\n'
        '{"question": "   "}\n'
        '{"question": 42}\n'
        '{"question": "q?", "doc": 3}\n'
        '{"question": "q?", "id": true}\n'
        '{"question": "q?", "id": 1.5}\n'
        '{"question": "last?", "id": "z"}\n',
    )
    rows = list(read_questions(path))
    good = [row for row in rows if isinstance(row, BatchQuestion)]
    bad = [row for row in rows if isinstance(row, BadLine)]
    assert [(q.line, q.id) for q in good] == [(1, "line-1"), (11, "z")]
    assert [b.line for b in bad] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    reasons = {b.line: b.reason for b in bad}
    assert "not valid JSON" in reasons[2]
    assert "an array" in reasons[3]
    assert reasons[4] == "no `question`"
    assert reasons[5] == reasons[6] == "`question` is empty"
    assert "string" in reasons[7]
    assert "`doc`" in reasons[8]
    assert "`id`" in reasons[9] and "`id`" in reasons[10]
    assert str(bad[0]).startswith("line 2: ")
    # File order is kept: the bad line 2 comes between good lines 1 and 11.
    assert [row.line for row in rows] == list(range(1, 12))


def test_duplicate_ids_are_bad_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        '{"question": "a?", "id": "x"}\n'
        '{"question": "b?", "id": "x"}\n'
        '{"question": "c?", "id": "line-4"}\n'
        '{"question": "d?"}\n',
    )
    rows = list(read_questions(path))
    assert [type(row).__name__ for row in rows] == [
        "BatchQuestion",
        "BadLine",
        "BatchQuestion",
        "BadLine",
    ]
    assert isinstance(rows[1], BadLine) and "line 1" in rows[1].reason
    assert isinstance(rows[3], BadLine) and "'line-4'" in rows[3].reason


def test_json_array_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.json", '[\n{"question": "a?"}\n]\n')
    with pytest.raises(BatchInputError, match="one question object per line"):
        read_questions(path)


# --- CSV ----------------------------------------------------------------------------------


def test_csv_with_bom_extra_columns_and_case_insensitive_header(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.csv",
        "ID,Notes,Question,Doc\r\n"
        '12,ignored,"Who, exactly, is Ahab?",moby.epub\r\n'
        "\r\n"
        ',,"A quoted\nmulti-line question?",\r\n'
        "x9,,Plain?,\r\n",
        bom=True,
    )
    assert list(read_questions(path)) == [
        BatchQuestion(line=2, question="Who, exactly, is Ahab?", doc="moby.epub", id="12"),
        BatchQuestion(line=4, question="A quoted\nmulti-line question?", doc=None, id="line-4"),
        BatchQuestion(line=6, question="Plain?", doc=None, id="x9"),
    ]


def test_csv_delimiter_comes_from_the_header(tmp_path: Path) -> None:
    semicolons = _write(tmp_path / "semi.csv", "id;question\na;Is it, or not?\n")
    assert [(q.id, q.question) for q in _questions(semicolons)] == [("a", "Is it, or not?")]
    tabs = _write(tmp_path / "tab.csv", "question\tdoc\nWhy; how?\tbook.pdf\n")
    assert [(q.question, q.doc) for q in _questions(tabs)] == [("Why; how?", "book.pdf")]
    # One column: commas in the questions are not mistaken for delimiters.
    single = _write(tmp_path / "one.csv", '\n\nquestion\nWell, then?\n"Say ""hi"", ok?"\n')
    assert [(q.line, q.question) for q in _questions(single)] == [
        (4, "Well, then?"),
        (5, 'Say "hi", ok?'),
    ]


def test_bad_csv_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.csv",
        "id,question\na,Fine?\nb,\nc\nd,Unquoted, comma?\ne,Also fine?\n",
    )
    rows = list(read_questions(path))
    assert [(type(row).__name__, row.line) for row in rows] == [
        ("BatchQuestion", 2),
        ("BadLine", 3),
        ("BadLine", 4),
        ("BadLine", 5),
        ("BatchQuestion", 6),
    ]
    assert isinstance(rows[1], BadLine) and rows[1].reason == "`question` is empty"
    assert isinstance(rows[2], BadLine) and rows[2].reason == "no `question`"
    assert isinstance(rows[3], BadLine) and "3 fields but the header has 2" in rows[3].reason


def test_csv_without_question_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.csv", "id,prompt\n1,Who?\n")
    with pytest.raises(BatchInputError, match="no `question` column") as caught:
        read_questions(path)  # raises at the call, before iteration
    assert isinstance(caught.value, EngineError)
    assert isinstance(caught.value, USER_ERRORS)
    with pytest.raises(BatchInputError, match="no `question` column"):
        read_questions(_write(tmp_path / "empty.csv", ""))


def test_csv_with_two_question_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="two `question` columns"):
        read_questions(_write(tmp_path / "q.csv", "question,Question\na,b\n"))


def test_unknown_extension_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match=r"\.jsonl.*\.csv"):
        read_questions(_write(tmp_path / "q.txt", "Who?\n"))
    with pytest.raises(BatchInputError, match="no questions file"):
        read_questions(tmp_path / "absent.jsonl")
    latin1 = tmp_path / "q.csv"
    latin1.write_bytes("question\nCaf\xe9?\n".encode("latin-1"))
    with pytest.raises(BatchInputError, match="Save it as UTF-8"):
        read_questions(latin1)


# --- resume and writing -------------------------------------------------------------------


def test_written_records_are_json_lines_id_first(tmp_path: Path) -> None:
    output = tmp_path / "answers.jsonl"
    with open_output(output) as writer:
        writer.write({"answer": "Ahab — captain", "id": "q1", "sources": [{"page": "3"}]})
        writer.write({"id": 7, "answer": "line\nbreak and \u2028 separator"})
        # Each write is on disk before the next: readable while the writer is still open.
        assert len(output.read_bytes().splitlines()) == 2
    raw = output.read_text(encoding="utf-8")
    assert "Ahab — captain" in raw  # ensure_ascii=False
    lines = raw.splitlines()  # splitlines breaks at U+2028 too: it must be escaped
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == ["id", "answer", "sources"]
    assert first["sources"] == [{"page": "3"}]
    assert second == {"id": "7", "answer": "line\nbreak and \u2028 separator"}
    assert answered_ids(output) == {"q1", "7"}


def test_every_write_is_fsynced_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "a.jsonl"
    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced_sizes.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with open_output(output) as writer:
        writer.write({"id": "a"})
        writer.write({"id": "b"})
    line = len(b'{"id": "a"}\n')
    assert synced_sizes == [line, 2 * line]


def test_write_refuses_records_without_id_or_with_nan(tmp_path: Path) -> None:
    with open_output(tmp_path / "a.jsonl") as writer:
        with pytest.raises(ValueError, match="`id`"):
            writer.write({"answer": "x"})
        with pytest.raises(ValueError):
            writer.write({"id": "a", "seconds": float("nan")})
    assert (tmp_path / "a.jsonl").read_bytes() == b""


def test_resume_after_a_torn_last_line(tmp_path: Path) -> None:
    output = tmp_path / "answers.jsonl"
    with open_output(output) as writer:
        for n in range(3):
            writer.write({"id": f"q{n}", "answer": f"answer {n}"})
    whole = output.read_bytes()
    torn = b'{"id": "q3", "answer": "half an ans'
    with output.open("ab") as handle:
        handle.write(torn)

    assert answered_ids(output) == {"q0", "q1", "q2"}

    with open_output(output) as writer:
        assert writer.torn_bytes == len(torn)
        assert output.read_bytes() == whole
        writer.write({"id": "q3", "answer": "answer 3"})
    records = [json.loads(line) for line in output.read_bytes().split(b"\n")[:-1]]
    assert [r["id"] for r in records] == ["q0", "q1", "q2", "q3"]
    assert output.read_bytes().endswith(b"\n")
    assert answered_ids(output) == {"q0", "q1", "q2", "q3"}


def test_a_torn_line_that_happens_to_parse_still_does_not_count(tmp_path: Path) -> None:
    output = tmp_path / "a.jsonl"
    output.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    assert answered_ids(output) == {"a"}
    assert repair_torn_tail(output) == len(b'{"id": "b"}')
    assert output.read_bytes() == b'{"id": "a"}\n'
    assert repair_torn_tail(output) == 0


def test_torn_tail_longer_than_a_scan_block_and_without_any_newline(tmp_path: Path) -> None:
    output = tmp_path / "a.jsonl"
    output.write_bytes(b'{"id": "a"}\n' + b"x" * 200_000)
    assert repair_torn_tail(output) == 200_000
    assert output.read_bytes() == b'{"id": "a"}\n'
    output.write_bytes(b'{"id": "only half')
    assert answered_ids(output) == set()
    assert repair_torn_tail(output) == len(b'{"id": "only half')
    assert output.read_bytes() == b""


def test_answered_ids_skips_junk_and_tolerates_a_missing_file(tmp_path: Path) -> None:
    assert answered_ids(tmp_path / "absent.jsonl") == set()
    assert repair_torn_tail(tmp_path / "absent.jsonl") == 0
    output = _write(tmp_path / "a.jsonl", '{"id": 5}\nnot json\n[1]\n{"no_id": 1}\n{"id": "b"}\n')
    assert answered_ids(output) == {"5", "b"}


def test_unwritable_output_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="another -o path"):
        open_output(tmp_path / "missing-folder" / "a.jsonl")


# --- progress -----------------------------------------------------------------------------


def test_rate_and_eta_arithmetic() -> None:
    progress = BatchProgress.measure(done=6, total=20, started=100.0, now=190.0)
    assert progress.elapsed_s == 90.0
    assert progress.remaining == 14
    assert progress.per_minute == pytest.approx(4.0)
    assert progress.seconds_left == pytest.approx(210.0)


def test_progress_edges() -> None:
    assert BatchProgress(done=0, total=5, elapsed_s=30.0).per_minute is None
    assert BatchProgress(done=0, total=5, elapsed_s=30.0).seconds_left is None
    assert BatchProgress(done=2, total=5, elapsed_s=0.0).seconds_left is None
    finished = BatchProgress(done=5, total=5, elapsed_s=0.0)
    assert finished.seconds_left == 0.0
    assert BatchProgress(done=0, total=0, elapsed_s=0.0).seconds_left == 0.0
    # A clock that steps backwards gives zero elapsed time, not negative time.
    assert BatchProgress.measure(done=1, total=2, started=10.0, now=9.0).elapsed_s == 0.0
    with pytest.raises(ValueError):
        BatchProgress(done=-1, total=2, elapsed_s=1.0)
