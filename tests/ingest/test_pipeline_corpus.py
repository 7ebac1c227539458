"""Every real PDF of the corpus through the whole pipeline into one library.

Each file ends in a document or a clear error naming the file and the cause, and after
every error the library is exactly as it was (same rows in every table, still consistent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.library import Library
from ingest.pipeline import AddStatus, FileOutcome, add_file
from ingest.types import ChunkSettings, ReadOptions
from tests.library_checks import assert_consistent, table_counts


def _add(library: Library, path: Path) -> FileOutcome:
    run = add_file(library, path, ChunkSettings(), ReadOptions())
    try:
        while True:
            next(run)
    except StopIteration as finished:
        outcome: FileOutcome = finished.value
    return outcome


@pytest.mark.corpus
@pytest.mark.slow
def test_every_corpus_pdf_is_added_or_refused_without_a_trace(
    corpus: Path, isolated_home: Path
) -> None:
    pdfs = sorted((corpus / "pdfs").rglob("*.pdf"))
    assert len(pdfs) >= 20
    added, refused = [], []
    with Library(isolated_home) as library:
        for path in pdfs:
            before = table_counts(isolated_home)
            outcome = _add(library, path)
            if outcome.status is AddStatus.FAILED:
                assert outcome.error and path.name in outcome.error, outcome.error
                assert table_counts(isolated_home) == before, f"{path.name} changed the library"
                refused.append(f"{path.parent.name}/{path.name}: {outcome.error}")
            else:
                assert outcome.document is not None and outcome.document.chunk_count > 0
                added.append(f"{path.parent.name}/{path.name}")
    assert_consistent(isolated_home)
    print(f"\nadded {len(added)}:", *added, sep="\n  ")
    print(f"refused {len(refused)}:", *refused, sep="\n  ")
    folders_refused = {line.split("/")[0] for line in refused}
    assert "real" not in folders_refused, "a real PDF with a text layer was refused"
    assert any(line.startswith("no_text_layer/") for line in refused)
    assert any(line.startswith("encrypted/") for line in refused)


@pytest.mark.corpus
def test_corpus_books_get_their_titles_and_chapters(corpus: Path, isolated_home: Path) -> None:
    carol = corpus / "books" / "A Christmas Carol.txt"
    pride = corpus / "books" / "pride-and-prejudice" / "1342-0.txt"
    with Library(isolated_home) as library:
        carol_doc = _add(library, carol).document
        pride_doc = _add(library, pride).document
        assert carol_doc is not None and pride_doc is not None
        assert carol_doc.title == "A Christmas Carol"
        assert pride_doc.title == "Pride and Prejudice"
        locations = {c.location for c in library.chunks(carol_doc.id)}
        assert any(location.startswith("Stave") for location in locations)
        assert pride_doc.token_count > 100_000
