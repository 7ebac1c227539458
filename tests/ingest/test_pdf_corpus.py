"""The PDF reader on real PDFs from the shared corpus (../shared/corpus/pdfs and the two
Pride and Prejudice PDFs): what each kind of file ends in, and how faithful the text is.

Every PDF under pdfs/ must end in an ExtractedText with text or an IngestError naming the
file and a cause, as expected for its folder; nothing else may escape, and nothing may
reach the terminal. The Pride and Prejudice PDF is checked against the Project Gutenberg
text it was made from: at least 95% of the book's word 8-grams must come out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.errors import (
    DamagedFileError,
    EmptyFileError,
    IngestError,
    NoTextLayerError,
    PasswordError,
)
from ingest.pdf import read_pdf
from ingest.text import strip_gutenberg_boilerplate
from ingest.types import ExtractedText, ReadOptions, ReadProgress
from tests.conftest import CORPUS_DIR

pytestmark = pytest.mark.corpus

PDF_DIR = CORPUS_DIR / "pdfs"
BOOK_DIR = CORPUS_DIR / "books" / "pride-and-prejudice"
# "_user-foo" in a file name: the user password is "foo" ("empty-user-pw": there is none).
_USER_PASSWORD = re.compile(r"(?:^|_)user-(?P<password>[A-Za-z0-9]+)")
NGRAM = 8
MIN_COVERAGE = 0.95


def _corpus_pdfs() -> list[Path]:
    # Collected before any fixture runs; without the corpus there is one placeholder
    # case, which the `corpus` fixture then skips (or fails under CI).
    found = sorted(PDF_DIR.rglob("*.pdf")) if PDF_DIR.is_dir() else []
    return found or [PDF_DIR / "absent.pdf"]


def _id(path: Path) -> str:
    return path.relative_to(PDF_DIR).as_posix()


def read(path: Path, password: str | None = None) -> ExtractedText:
    reader = read_pdf(path.read_bytes(), path.name, ReadOptions(password=password))
    return _finish(reader)


def _finish(reader: Iterator[ReadProgress]) -> ExtractedText:
    while True:
        try:
            next(reader)
        except StopIteration as stop:
            result: ExtractedText = stop.value
            return result


def outcome(path: Path, password: str | None = None) -> ExtractedText | IngestError:
    """What reading `path` ends in: its text, or the IngestError it raised (and nothing else)."""
    try:
        return read(path, password)
    except IngestError as error:
        return error


def assert_explained(error: IngestError, path: Path) -> None:
    """An error a person can act on: it names the file and says what is wrong."""
    message = str(error)
    assert path.name in message, message
    cause = message.replace(path.name, "")
    assert len(cause.split()) >= 5, f"no cause given: {message!r}"


@pytest.mark.parametrize("path", _corpus_pdfs(), ids=_id)
def test_every_corpus_pdf_ends_in_text_or_an_explained_error(
    corpus: Path, path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = path.parent.name
    password_in_name = _USER_PASSWORD.search(path.name)
    result = outcome(path)
    print(f"{_id(path)}: {_describe(result)}")

    if isinstance(result, ExtractedText):
        assert result.text.strip()
        assert len(result.sections) == result.page_count
        assert all(section.label for section in result.sections)
    else:
        assert_explained(result, path)

    if folder == "real":
        assert isinstance(result, ExtractedText), result
    elif folder == "no_text_layer":
        assert isinstance(result, NoTextLayerError), result
        assert "OCR" in str(result)
    elif folder == "malformed":
        assert isinstance(result, ExtractedText | DamagedFileError | EmptyFileError), result
    elif folder == "encrypted":
        if password_in_name:
            assert isinstance(result, PasswordError), result
            assert "password-protected" in str(result)
            opened = outcome(path, password_in_name["password"])
            assert isinstance(opened, ExtractedText), opened
            assert opened.text.strip()
            wrong = outcome(path, password_in_name["password"] + "-wrong")
            assert isinstance(wrong, PasswordError), wrong
            assert "wrong" in str(wrong)
        else:
            # base_unencrypted.pdf, and files with an empty user password: no password is
            # needed. (encrypted_doc_no_id_empty-user-pw.pdf holds only images.)
            assert not isinstance(result, PasswordError), result
            assert isinstance(result, ExtractedText | NoTextLayerError), result
    else:
        pytest.fail(f"no expectation for the corpus folder {folder!r}: add one")

    assert capsys.readouterr().err == "", "pypdf noise reached the terminal"


def test_the_dmca_summary_opens_without_a_password(corpus: Path) -> None:
    # Encrypted, with an empty user password: restrictions only, nothing to ask for.
    extracted = read(PDF_DIR / "real" / "us_copyright_office_dmca_summary_1998.pdf")
    assert extracted.page_count == 18
    assert extracted.title == "The Digital Millennium Copyright Act of 1998"
    assert "circumvention of access control measures" in " ".join(extracted.text.split())


def test_the_pdfs_own_page_labels_are_used(corpus: Path) -> None:
    # The German lecture notes number their front matter in roman numerals.
    extracted = read(PDF_DIR / "real" / "GeoTopo-komprimiert_de.pdf")
    labels = [section.label for section in extracted.sections]
    assert labels[:5] == ["i", "ii", "iii", "1", "2"]
    assert labels != [str(index + 1) for index in range(len(labels))]


def test_running_headers_are_gone_from_real_documents(corpus: Path) -> None:
    dmca = read(PDF_DIR / "real" / "us_copyright_office_dmca_summary_1998.pdf")
    # The running title stood atop pages 2 to 18 and the footer at the foot of all 18.
    # pypdf reads a few footers out after the footnotes, away from the page's edge, and
    # those stay: most must be gone.
    assert dmca.text.count("The Digital Millennium Copyright Act of 1998") <= 1
    assert dmca.text.count("Copyright Office Summary December 1998 Page") <= 3
    register = read(PDF_DIR / "real" / "federal-register-2020-17221.pdf")
    assert "VerDate Sep<11>2014" not in register.text


@pytest.mark.slow
def test_pride_and_prejudice_pdf_against_its_gutenberg_text(corpus: Path) -> None:
    path = BOOK_DIR / "1342-pdf.pdf"
    started = time.perf_counter()
    extracted = read(path)
    pages_per_second = (extracted.page_count or 0) / (time.perf_counter() - started)

    labels = [section.label for section in extracted.sections]
    assert extracted.page_count == 234
    assert len(labels) == 234
    assert all(labels)
    if _defines_page_labels(path):
        assert labels != [str(index + 1) for index in range(len(labels))]
    assert extracted.title == "Pride and Prejudice, by Jane Austen"

    coverage, missing = _ngram_coverage(_gutenberg_text(), extracted.text)
    print(
        f"\n1342-pdf.pdf: {extracted.page_count} pages at {pages_per_second:.0f} pages/s;"
        f" word {NGRAM}-gram coverage of 1342-0.txt: {coverage:.2%}"
        f" (first missing: {' '.join(missing[0]) if missing else '-'})"
    )
    assert coverage >= MIN_COVERAGE


@pytest.mark.slow
def test_pride_and_prejudice_latex_pdf_against_its_gutenberg_text(corpus: Path) -> None:
    # This one is set in Palatino Type1 fonts with ligatures and curly quotes, which pypdf
    # decodes only with fontTools (the pypdf[fonts] extra); without it "ﬁ" and "“" come
    # out as control characters and whole words are lost.
    pytest.importorskip("fontTools", reason="fontTools (pypdf[fonts]) is not installed")
    extracted = read(BOOK_DIR / "pandp12p2.pdf")
    coverage, _ = _ngram_coverage(_gutenberg_text(), extracted.text)
    print(f"\npandp12p2.pdf: word {NGRAM}-gram coverage of 1342-0.txt: {coverage:.2%}")
    assert coverage >= MIN_COVERAGE


def _gutenberg_text() -> str:
    # UTF-8 with a byte order mark and CRLF line ends.
    raw = (BOOK_DIR / "1342-0.txt").read_text(encoding="utf-8-sig")
    return strip_gutenberg_boilerplate(raw.replace("\r\n", "\n"))


def _words(text: str) -> list[str]:
    # Lower case, split on anything not a letter or digit: "Bennet’s" and "Bennet's" both
    # become "bennet", "s", so straight and curly quotes cannot decide a match.
    return re.findall(r"[^\W_]+", text.lower())


def _ngram_coverage(source: str, extracted: str) -> tuple[float, list[tuple[str, ...]]]:
    """The share of `source`'s word n-grams found in `extracted`, and the missing ones."""
    wanted = _ngrams(_words(source))
    found = set(_ngrams(_words(extracted)))
    missing = [gram for gram in wanted if gram not in found]
    return 1 - len(missing) / len(wanted), missing


def _ngrams(words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def _defines_page_labels(path: Path) -> bool:
    import pypdf

    root = pypdf.PdfReader(path).trailer["/Root"].get_object()
    return isinstance(root, pypdf.generic.DictionaryObject) and "/PageLabels" in root


def _describe(result: ExtractedText | IngestError) -> str:
    if isinstance(result, ExtractedText):
        return f"text, {result.page_count} pages, {len(result.text)} characters"
    return f"{type(result).__name__}: {result}"
