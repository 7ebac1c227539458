"""The ingestion pipeline: file -> library, progress, idempotence, failures that change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.library import Library
from ingest.pipeline import AddStatus, FileOutcome, FileProgress, Stage, add_file
from ingest.types import Chunk, ChunkSettings, Document, ExtractedText, Format, ReadOptions
from tests.library_checks import assert_consistent, table_counts

BOOK = """# The Lighthouse

The keeper climbed the stairs each night.

## The Storm

Waves broke over the rocks. The lamp held. The keeper's log recorded 1,204 ships.
"""


def _run(
    library: Library, path: Path, password: str | None = None
) -> tuple[list[FileProgress], FileOutcome]:
    events: list[FileProgress] = []
    run = add_file(library, path, ChunkSettings(), ReadOptions(password=password))
    try:
        while True:
            events.append(next(run))
    except StopIteration as finished:
        return events, finished.value


def test_a_markdown_file_is_added_with_sections_and_chunks(
    tmp_path: Path, isolated_home: Path
) -> None:
    source = tmp_path / "lighthouse.md"
    source.write_text(BOOK, encoding="utf-8")
    with Library(isolated_home) as library:
        events, outcome = _run(library, source)
        assert outcome.status is AddStatus.ADDED
        document = outcome.document
        assert document is not None
        assert document.title == "The Lighthouse"
        assert document.format is Format.MARKDOWN
        assert document.chunk_count == len(library.chunks(document.id)) >= 1
        assert document.token_count > 20
        labels = [s.label for s in library.sections(document.id)]
        assert "The Storm" in labels
        stages = [e.stage for e in events]
        assert (
            stages.index(Stage.READING) < stages.index(Stage.CHUNKING) < stages.index(Stage.SAVING)
        )
        assert set(outcome.stage_seconds) == {Stage.READING, Stage.CHUNKING, Stage.SAVING}
    assert assert_consistent(isolated_home) == ["The Lighthouse"]


def test_adding_the_same_bytes_again_is_a_no_op(tmp_path: Path, isolated_home: Path) -> None:
    first = tmp_path / "a.md"
    first.write_text(BOOK, encoding="utf-8")
    copy = tmp_path / "copy-of-a.md"
    copy.write_bytes(first.read_bytes())
    with Library(isolated_home) as library:
        _, added = _run(library, first)
        before = table_counts(isolated_home)
        events, again = _run(library, copy)
        assert again.status is AddStatus.ALREADY_PRESENT
        assert again.document == added.document
        assert events == []
        assert table_counts(isolated_home) == before


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n  \t ")
    fake_pdf = tmp_path / "notes.pdf"
    fake_pdf.write_text("just some notes, not a PDF at all\n")
    binary = tmp_path / "picture.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {
        "empty": (empty, "empty"),
        "blank": (blank, "no text"),
        "fake pdf": (fake_pdf, "not a PDF"),
        "binary": (binary, "picture.png"),
        "folder": (folder, "folder"),
        "missing": (tmp_path / "nowhere.txt", "does not exist"),
    }


@pytest.mark.parametrize("case", ["empty", "blank", "fake pdf", "binary", "folder", "missing"])
def test_bad_input_fails_clearly_and_changes_nothing(
    tmp_path: Path, isolated_home: Path, case: str
) -> None:
    good = tmp_path / "good.md"
    good.write_text(BOOK, encoding="utf-8")
    path, message = _bad_files(tmp_path)[case]
    with Library(isolated_home) as library:
        _run(library, good)
        before = table_counts(isolated_home)
        _, outcome = _run(library, path)
        assert outcome.status is AddStatus.FAILED
        assert outcome.error is not None
        assert message in outcome.error
        assert path.name in outcome.error
        assert table_counts(isolated_home) == before
    assert_consistent(isolated_home)


def test_a_plain_text_book_without_a_title_is_named_after_its_file(
    tmp_path: Path, isolated_home: Path
) -> None:
    source = tmp_path / "The Keeper.txt"
    body = "\n\n".join(
        f"CHAPTER {n}\n\nThe lamp was lit again that night." for n in ("I", "II", "III")
    )
    source.write_text(body, encoding="utf-8")
    with Library(isolated_home) as library:
        _, outcome = _run(library, source)
    assert outcome.document is not None
    assert outcome.document.title == "The Keeper"


class _BeatenToIt(Library):
    """A library that another process (a second connection to the same file) adds the same
    file to while this one is between checking for it and saving it."""

    def __init__(self, home: Path, rival_source: Path) -> None:
        super().__init__(home)
        self.home = home
        self.rival_source = rival_source

    def save(
        self,
        document: Document,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        settings: ChunkSettings,
    ) -> bool:
        with Library(self.home) as rival:
            _, rival_outcome = _run(rival, self.rival_source)
        assert rival_outcome.status is AddStatus.ADDED
        return super().save(document, extracted, chunks, settings)


def test_a_file_another_process_added_meanwhile_is_already_present(
    tmp_path: Path, isolated_home: Path
) -> None:
    source = tmp_path / "lighthouse.md"
    source.write_text(BOOK, encoding="utf-8")
    with _BeatenToIt(isolated_home, source) as library:
        _, outcome = _run(library, source)
        assert outcome.status is AddStatus.ALREADY_PRESENT
        assert outcome.document is not None
        assert outcome.document == library.get(outcome.document.id)
    assert assert_consistent(isolated_home) == ["The Lighthouse"]
