"""The chunker: token limits, overlap, boundaries, spans and location labels."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.chunker import chunk_document
from ingest.normalize import TextBuilder
from ingest.tokens import count_tokens
from ingest.types import Chunk, ChunkSettings, ExtractedText, Format, SectionKind

SENTENCE = "The quick brown fox number {n} jumps over the lazy dog near the river bank."


def _pages(page_texts: list[str], labels: list[str] | None = None) -> ExtractedText:
    builder = TextBuilder()
    for index, text in enumerate(page_texts):
        builder.add(labels[index] if labels else str(index + 1), SectionKind.PAGE, text)
    return builder.build(Format.PDF, page_count=len(page_texts))


def _paragraphs(count: int, sentences_each: int) -> str:
    n = iter(range(10**6))
    return "\n\n".join(
        " ".join(SENTENCE.format(n=next(n)) for _ in range(sentences_each)) for _ in range(count)
    )


def test_chunks_respect_the_token_limit_and_cover_the_text() -> None:
    extracted = _pages([_paragraphs(4, 6) for _ in range(10)])
    settings = ChunkSettings(max_tokens=200, overlap=40)
    chunks = chunk_document(extracted.text, extracted.sections, settings)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= 200
        assert chunk.token_count == count_tokens(chunk.text)
        assert extracted.text[chunk.start : chunk.end] == chunk.text
    covered: set[int] = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    words = [m.start() for m in re.finditer(r"\S", extracted.text)]
    assert all(offset in covered for offset in words)


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    extracted = _pages([_paragraphs(1, 60)])
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(200, 40))
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "no overlap"
        overlap = extracted.text[after.start : before.end]
        assert 0 < count_tokens(overlap) <= 45
        assert overlap.startswith("The quick")


def test_zero_overlap_leaves_no_gap_and_no_repeat() -> None:
    extracted = _pages([_paragraphs(1, 60)])
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(200, 0))
    for before, after in itertools.pairwise(chunks):
        assert after.start >= before.end
        assert extracted.text[before.end : after.start].strip() == ""


def test_a_chunk_prefers_to_end_at_a_paragraph() -> None:
    text = _paragraphs(6, 4)  # ~ 70 tokens per paragraph
    extracted = _pages([text])
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(200, 0))
    for chunk in chunks[:-1]:
        following = extracted.text[chunk.end : chunk.end + 2]
        assert following == "\n\n", f"chunk ended mid-paragraph: {chunk.text[-40:]!r}"


def test_never_cuts_inside_a_word_even_without_punctuation() -> None:
    words = " ".join(f"word{n}" for n in range(3000))
    extracted = _pages([words])
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(100, 10))
    for chunk in chunks:
        assert chunk.token_count <= 100
        assert re.fullmatch(r"word\d+( word\d+)*", chunk.text), chunk.text[:60]


def test_chapters_are_never_mixed_in_one_chunk() -> None:
    builder = TextBuilder()
    builder.add("Chapter 1", SectionKind.CHAPTER, _paragraphs(1, 3))
    builder.add("Chapter 2", SectionKind.CHAPTER, _paragraphs(1, 3))
    extracted = builder.build(Format.TEXT)
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(600, 100))
    assert [c.location for c in chunks] == ["Chapter 1", "Chapter 2"]
    assert [c.section_ordinal for c in chunks] == [0, 1]


def test_a_chunk_across_pages_is_cited_as_a_page_range() -> None:
    extracted = _pages([_paragraphs(1, 2)] * 3, labels=["xi", "xii", "1"])
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings(600, 100))
    assert len(chunks) == 1
    assert chunks[0].location == "pp. xi–1"


def test_empty_text_gives_no_chunks() -> None:
    extracted = _pages([""])
    assert chunk_document(extracted.text, extracted.sections, ChunkSettings()) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("abcdefgh .!?\n"), min_size=0, max_size=400),
        min_size=1,
        max_size=5,
    ),
    st.integers(min_value=16, max_value=120),
)
def test_any_text_is_chunked_within_limits_with_exact_spans(pages: list[str], size: int) -> None:
    extracted = _pages(pages)
    settings_ = ChunkSettings(max_tokens=size, overlap=size // 4)
    chunks = chunk_document(extracted.text, extracted.sections, settings_)
    for chunk in chunks:
        assert extracted.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip()
        assert chunk.token_count <= size
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    if extracted.text.strip():
        assert chunks


def _assert_within_limit_and_covering(text: str, chunks: list[Chunk], size: int) -> None:
    for chunk in chunks:
        assert chunk.token_count == count_tokens(chunk.text) <= size
        assert text[chunk.start : chunk.end] == chunk.text
        assert not chunk.text[0].isspace()
    covered: set[int] = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(m.start() in covered for m in re.finditer(r"\S", text))


def test_a_sentence_that_fits_only_with_the_space_before_it_is_cut_again() -> None:
    # " Gardiner" is two tokens, "Gardiner" three: the sentence is 41 tokens after "Mr. "
    # but 42 as a chunk's start, which leaves out the space.
    assert (count_tokens(" Gardiner"), count_tokens("Gardiner")) == (2, 3)
    text = "Mr. " + " ".join(["Gardiner"] * 20) + "."
    chunks = chunk_document(text, (), ChunkSettings(max_tokens=41, overlap=0))
    _assert_within_limit_and_covering(text, chunks, 41)


def test_a_word_longer_than_a_chunk_is_cut_at_tokens_not_characters() -> None:
    # Each of these characters is two tokens, so a cut every so many characters overflows.
    assert count_tokens("😀" * 10) == 20
    text = "Look: " + "😀" * 500 + " and again " + "😀" * 300
    chunks = chunk_document(text, (), ChunkSettings(max_tokens=100, overlap=10))
    _assert_within_limit_and_covering(text, chunks, 100)
    assert len(chunks) >= 16


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(" ".join(["=" * 64] * 400), id="words of one long token each"),
        pytest.param("start " + " " * 5000 + " ".join(["more"] * 300), id="a long run of spaces"),
        pytest.param(" ".join(["alpha beta\nriver"] * 300), id="single newlines"),
    ],
)
def test_an_overlong_sentence_of_odd_words_is_cut_within_the_limit(text: str) -> None:
    chunks = chunk_document(text, (), ChunkSettings(max_tokens=50, overlap=10))
    _assert_within_limit_and_covering(text, chunks, 50)


def test_a_long_text_without_sentence_ends_fills_chunks() -> None:
    words = " ".join(["alpha", "beta", "the", "river"] * 5000)
    chunks = chunk_document(words, (), ChunkSettings(max_tokens=200, overlap=20))
    _assert_within_limit_and_covering(words, chunks, 200)
    # Pieces are cut whole-word but as full as the limit allows.
    assert all(c.token_count >= 195 for c in chunks[:-1])
