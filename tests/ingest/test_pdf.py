"""The PDF reader on PDFs made by tests/pdf_factory.py: text, labels, progress, passwords,
scans, damage, and pypdf kept quiet."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import get_args

import pypdf
import pytest

from ingest.errors import (
    DamagedFileError,
    EmptyFileError,
    IngestError,
    NoTextLayerError,
    PasswordError,
    UnsupportedFormatError,
)
from ingest.pdf import drop_running_lines, meaningful_title, read_pdf
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind
from tests.conftest import REPO_ROOT
from tests.pdf_factory import (
    Algorithm,
    book_labels,
    make_image_pdf,
    make_pdf,
    truncated,
)

PAGES = [
    "Preface\nWhy this book was written.",
    "Contents\nOne: the harbour",
    "Chapter One\nThe keeper climbed the stairs at dusk.\nThe lamp was cold.",
    "He lit it with the last match.\nThe ships came home.",
    "Chapter Two\nMorning found the harbour full.",
]


def read(
    data: bytes, name: str = "book.pdf", password: str | None = None
) -> tuple[ExtractedText, list[ReadProgress]]:
    """Run the reader to the end: its result and the progress it yielded."""
    events: list[ReadProgress] = []
    reader = read_pdf(data, name, ReadOptions(password=password))
    while True:
        try:
            events.append(next(reader))
        except StopIteration as stop:
            return stop.value, events


def page_texts(extracted: ExtractedText) -> list[str]:
    return [extracted.text[s.start : s.end] for s in extracted.sections]


def test_page_text_and_labels_round_trip() -> None:
    extracted, _ = read(make_pdf(PAGES, front_matter=2, title="The Keeper"))

    assert extracted.format is Format.PDF
    assert extracted.page_count == len(PAGES)
    assert extracted.title == "The Keeper"
    assert [s.label for s in extracted.sections] == ["i", "ii", "1", "2", "3"]
    assert [s.label for s in extracted.sections] == book_labels(len(PAGES), front_matter=2)
    assert all(s.kind is SectionKind.PAGE for s in extracted.sections)
    assert [s.ordinal for s in extracted.sections] == list(range(len(PAGES)))
    assert extracted.sections[2].citation() == "p. 1"
    # Each page's lines come back in order, inside that page's span.
    for page, text in zip(PAGES, page_texts(extracted), strict=True):
        assert " ".join(page.split("\n")) == text


def test_punctuation_and_accents_survive() -> None:
    extracted, _ = read(make_pdf(["“Café (au lait)”, she said — \\ twice."]))
    assert extracted.text == "“Café (au lait)”, she said — \\ twice."


def test_without_labels_pages_are_numbered_from_one() -> None:
    extracted, _ = read(make_pdf(["one", "two", "three"]))
    assert [s.label for s in extracted.sections] == ["1", "2", "3"]


def test_progress_counts_every_page() -> None:
    _, events = read(make_pdf([f"page {n} text" for n in range(7)]))
    assert events == [ReadProgress(done=n, total=7) for n in range(1, 8)]


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("Pride and Prejudice, by Jane Austen", "Pride and Prejudice, by Jane Austen"),
        ("  Tides\x00 and  Harbours ", "Tides and Harbours"),
        ("pandp.dvi", None),
        ("Microsoft Word - report final.doc", None),
        ("Untitled", None),
        ("", None),
        ("book", None),  # the file's own name says nothing more
        (None, None),
        (42, None),
    ],
)
def test_meaningful_title(raw: object, title: str | None) -> None:
    assert meaningful_title(raw, "book.pdf") == title


def test_a_file_name_in_the_metadata_is_no_title() -> None:
    extracted, _ = read(make_pdf(["text"], title="scan_0042.tex"))
    assert extracted.title is None


@pytest.mark.parametrize("algorithm", get_args(Algorithm))
def test_encrypted_with_the_right_password(algorithm: Algorithm) -> None:
    data = make_pdf(["The secret page."], password="sesame", algorithm=algorithm)
    extracted, _ = read(data, password="sesame")
    assert extracted.text == "The secret page."


def test_the_owner_password_opens_it_too() -> None:
    data = make_pdf(["Owned."], password="user-pw", owner_password="owner-pw")
    extracted, _ = read(data, password="owner-pw")
    assert extracted.text == "Owned."


@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
def test_an_empty_user_password_needs_no_password(algorithm: Algorithm) -> None:
    data = make_pdf(["Anyone may read this."], password="", algorithm=algorithm)
    extracted, _ = read(data)
    assert extracted.text == "Anyone may read this."
    # A password given anyway does no harm.
    extracted, _ = read(data, password="whatever")
    assert extracted.text == "Anyone may read this."


def test_a_missing_password_is_asked_for() -> None:
    data = make_pdf(["The secret page."], password="sesame")
    with pytest.raises(PasswordError) as error:
        read(data, name="vault.pdf")
    message = str(error.value)
    assert "vault.pdf" in message
    assert "password-protected" in message
    assert "--password" in message


def test_a_wrong_password_is_called_wrong() -> None:
    data = make_pdf(["The secret page."], password="sesame")
    with pytest.raises(PasswordError) as error:
        read(data, name="vault.pdf", password="open-up")
    message = str(error.value)
    assert "vault.pdf" in message
    assert "wrong" in message


@pytest.mark.parametrize("off_page_text", [None, "Background"])
def test_a_scan_is_refused_with_the_ocr_hint(off_page_text: str | None) -> None:
    # ImageMagick writes "Background" above the visible page of the image PDFs it makes;
    # text nobody can see is no text layer.
    data = make_image_pdf(3, off_page_text=off_page_text)
    with pytest.raises(NoTextLayerError) as error:
        read(data, name="scan.pdf")
    message = str(error.value)
    assert "scan.pdf" in message
    assert "no text layer" in message
    assert "scanned" in message
    assert "OCR" in message
    assert "ocrmypdf" in message


def test_an_ocrd_scan_keeps_its_short_text() -> None:
    # Pictures with a little text that is on the page: a sparse document, not a scan.
    extracted, _ = read(make_pdf(["Fig. 1", "Fig. 2"], with_image=True))
    assert page_texts(extracted) == ["Fig. 1", "Fig. 2"]


def test_blank_pages_are_empty_not_scanned() -> None:
    with pytest.raises(EmptyFileError) as error:
        read(make_pdf(["", ""]), name="blank.pdf")
    assert "blank.pdf" in str(error.value)
    assert "no text" in str(error.value)


def test_empty_bytes() -> None:
    with pytest.raises(EmptyFileError) as error:
        read(b"", name="nothing.pdf")
    assert "nothing.pdf" in str(error.value)
    assert "empty" in str(error.value)


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_file_is_damaged_and_says_so(keep: float) -> None:
    data = truncated(make_pdf([f"page {n}\nsome words" for n in range(20)]), keep)
    with pytest.raises(DamagedFileError) as error:
        read(data, name="cut.pdf")
    message = str(error.value)
    assert "cut.pdf" in message
    assert "damaged" in message
    assert "cut short" in message


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n" + b"\x00garbage\xff" * 300, b"this is not a PDF at all\n" * 50],
    ids=["pdf-header-then-garbage", "text"],
)
def test_garbage_is_damaged_and_names_the_file(data: bytes) -> None:
    with pytest.raises(DamagedFileError) as error:
        read(data, name="junk.pdf")
    message = str(error.value)
    assert message.startswith("junk.pdf is damaged and could not be read: ")
    assert "(pypdf: " in message


def test_a_broken_xref_is_recovered_in_silence(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    data = _with_wrong_startxref(make_pdf(["Recovered text.", "Page two."]))
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extracted, _ = read(data)
    assert page_texts(extracted) == ["Recovered text.", "Page two."]
    assert capsys.readouterr().err == ""
    assert [r for r in caplog.records if r.name.startswith("pypdf")] == []
    assert caught == []


def test_pypdf_is_silent_on_a_damaged_file_and_left_as_found(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("pypdf")
    before = (logger.level, logger.propagate, list(logger.handlers), list(warnings.filters))
    caplog.set_level(logging.DEBUG)
    data = truncated(_with_wrong_startxref(make_pdf(["a", "b", "c"])), 0.7)
    with pytest.raises(DamagedFileError):
        read(data, name="broken.pdf")
    assert capsys.readouterr().err == ""
    assert [r for r in caplog.records if r.name.startswith("pypdf")] == []
    after = (logger.level, logger.propagate, list(logger.handlers), list(warnings.filters))
    assert after == before


def test_pypdf_warnings_outside_a_read_still_reach_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read(make_pdf(["x"]))
    with caplog.at_level(logging.WARNING):
        logging.getLogger("pypdf._reader").warning("after the read")
    assert "after the read" in caplog.text


def test_a_page_that_fails_is_kept_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_pages_containing(monkeypatch, "BROKEN")
    extracted, events = read(make_pdf(["first page", "BROKEN page", "third page"]))
    assert page_texts(extracted) == ["first page", "", "third page"]
    assert [s.label for s in extracted.sections] == ["1", "2", "3"]
    assert len(events) == 3


def test_when_every_page_fails_the_file_is_damaged(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_pages_containing(monkeypatch, "BROKEN")
    with pytest.raises(DamagedFileError) as error:
        read(make_pdf(["BROKEN one", "BROKEN two"]), name="bad-pages.pdf")
    assert "bad-pages.pdf" in str(error.value)
    assert "KeyError" in str(error.value)


def test_running_headers_footers_and_page_numbers_are_dropped() -> None:
    bodies = [_prose(n) for n in range(6)]
    pages = [f"The Keeper's Log\n{body}\n- {n + 1} -" for n, body in enumerate(bodies)]
    extracted, _ = read(make_pdf(pages))
    assert page_texts(extracted) == [" ".join(body.split("\n")) for body in bodies]


def test_drop_running_lines_keeps_content() -> None:
    # Lines that differ only in their numbers fill whole pages: content, not headers.
    listing = ["\n".join(f"Item {n}: {n * 3} crates" for n in range(k, k + 5)) for k in range(5)]
    assert drop_running_lines(listing) == listing
    # A running title at the edges goes, even from a short page; in the middle it stays.
    pages = [f"Title\n{_prose(n)}\nTitle\n{_prose(n + 9)}\n{n}" for n in range(4)]
    pages.append("Title\nThe end.")
    expected = [f"{_prose(n)}\nTitle\n{_prose(n + 9)}" for n in range(4)] + ["The end."]
    assert drop_running_lines(pages) == expected
    # Two pages are too few to tell a running head from a repeated line.
    two = [f"Head\n{_prose(1)}", f"Head\n{_prose(2)}"]
    assert drop_running_lines(two) == two
    # Pages of a line or two are all edges: nothing to tell a header by.
    short = [f"page {n} text" for n in range(6)]
    assert drop_running_lines(short) == short
    # Figures at the foot of every page are a table's rows, not a footer.
    tables = [f"{_prose(n)}\n1,250 3,400\n12.5 13.2" for n in range(4)]
    assert drop_running_lines(tables) == tables


def test_a_foreign_security_handler_is_unsupported_not_damaged() -> None:
    # Certificate (public-key) encryption: pypdf opens only the standard password handler.
    data = make_pdf(["x"], password="pw").replace(b"/Standard", b"/PubSec__")
    with pytest.raises(UnsupportedFormatError) as error:
        read(data, name="certified.pdf")
    assert "certified.pdf is encrypted in a way longread cannot open" in str(error.value)


def test_concurrent_reads_leave_pypdf_logging_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("pypdf")
    before = (logger.level, logger.propagate, list(logger.handlers))
    damaged = _with_wrong_startxref(make_pdf([_prose(n) for n in range(30)]))

    def read_some(_: int) -> int:
        return sum(len(read(damaged)[0].text) for _ in range(3))

    with ThreadPoolExecutor(max_workers=4) as pool:
        lengths = set(pool.map(read_some, range(8)))
    assert len(lengths) == 1
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seed", range(40))
def test_mangled_bytes_end_in_text_or_an_ingest_error(seed: int) -> None:
    # Whatever pypdf raises on a broken file must come out as an IngestError.
    rng = random.Random(seed)
    data = bytearray(make_pdf([_prose(n) for n in range(3)], front_matter=1, title="T"))
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    try:
        extracted, _ = read(bytes(data), name="mangled.pdf")
    except IngestError as error:
        assert "mangled.pdf" in str(error)
    else:
        assert len(extracted.sections) == extracted.page_count


def test_every_reader_error_is_an_ingest_error() -> None:
    for data in (b"", b"%PDF-1.4 broken", make_image_pdf(1)):
        with pytest.raises(IngestError):
            read(data)


def test_importing_the_reader_does_not_import_pypdf() -> None:
    code = "import sys, ingest.pdf; sys.exit('pypdf' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, "ingest.pdf must import pypdf lazily"


def _prose(seed: int, lines: int = 6) -> str:
    """A few lines of made-up words that differ from page to page, as body text does."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "\n".join(
        " ".join("".join(rng.choices(letters, k=rng.randint(3, 8))) for _ in range(6))
        for _ in range(lines)
    )


def _with_wrong_startxref(data: bytes) -> bytes:
    """`data` with its startxref pointing at the start of the file, which pypdf repairs."""
    head, _, tail = data.rpartition(b"startxref\n")
    offset, _, rest = tail.partition(b"\n")
    assert offset.isdigit()
    return head + b"startxref\n1\n" + rest


def _break_pages_containing(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """Make pypdf crash (as it does on some broken pages) on pages whose text has `marker`."""
    extract = pypdf.PageObject.extract_text

    def failing(self: pypdf.PageObject, *args: object, **kwargs: object) -> str:
        text = extract(self, *args, **kwargs)  # type: ignore[arg-type]
        if marker in text:
            raise KeyError("/Font")
        return text

    monkeypatch.setattr(pypdf.PageObject, "extract_text", failing)
