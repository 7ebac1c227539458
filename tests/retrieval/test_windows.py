from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.types import Pooling
from retrieval.windows import ChunkEncoder, window_spans
from tests.fakes import FakeEmbedder

FILLER_TEXT = (
    "river stone meadow candle harbor violin orchard blanket pepper saddle glacier "
    "thimble lantern marble compass pillow ribbon cactus walnut feather anchor tunnel "
    "basket mirror cobweb ladder mitten puddle kettle"
)
FILLER = FILLER_TEXT.split()
FACT = "the lighthouse keeper hid the brass key"


def _spans_from(lengths: list[int], gaps: list[bool]) -> list[tuple[int, int]]:
    spans, offset = [], 0
    for length, gap in zip(lengths, gaps, strict=True):
        offset += 1 if gap else 0
        spans.append((offset, offset + length))
        offset += length
    return spans


def _token_range(spans: list[tuple[int, int]], window: tuple[int, int]) -> tuple[int, int]:
    inside = [i for i, (s, e) in enumerate(spans) if s >= window[0] and e <= window[1]]
    return inside[0], inside[-1] + 1


@given(
    st.lists(st.tuples(st.integers(1, 6), st.booleans()), max_size=120),
    st.integers(1, 40),
    st.integers(0, 30),
)
def test_windows_cover_every_token_within_the_limit(
    tokens: list[tuple[int, bool]], max_tokens: int, overlap: int
) -> None:
    spans = _spans_from([n for n, _ in tokens], [g for _, g in tokens])
    windows = window_spans(spans, max_tokens, overlap)
    if not spans:
        assert windows == []
        return
    ranges = [_token_range(spans, w) for w in windows]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(spans)
    for first, last in ranges:
        assert 0 < last - first <= max_tokens
    for (first_a, last_a), (first_b, _) in itertools.pairwise(ranges):
        assert first_a < first_b <= last_a  # moves forward, never skips a token


def test_windows_share_the_overlap_and_start_at_words() -> None:
    text = " ".join(f"w{i}" for i in range(40))
    spans = FakeEmbedder().token_spans(text)
    windows = window_spans(spans, max_tokens=16, overlap=4)
    ranges = [_token_range(spans, w) for w in windows]
    assert ranges == [(0, 16), (12, 28), (24, 40)]
    assert text[windows[1][0] : windows[1][1]].startswith("w12 ")


def chunk_score(rows: np.ndarray, query: np.ndarray) -> float:
    """How dense search scores a chunk: its best row."""
    return float((rows @ query).max())


def test_a_text_within_the_limit_is_one_window() -> None:
    embedder = FakeEmbedder(max_tokens=16)
    text = "a short text of seven words"
    assert window_spans(embedder.token_spans(text), 16, 4) == [(0, len(text))]
    for pooling in Pooling:
        (rows,) = ChunkEncoder(embedder, pooling=pooling).encode([text])
        np.testing.assert_allclose(rows, embedder.embed([text]), atol=1e-6)


def test_every_window_of_a_batch_goes_to_the_embedder_in_one_call() -> None:
    embedder = FakeEmbedder(max_tokens=16)
    long_text = " ".join(FILLER)
    encoded = ChunkEncoder(embedder).encode([long_text, "short one", long_text])
    assert embedder.calls == 1
    assert len(embedder.embedded) == 3 + 1 + 3  # 29 words in windows of 16 sharing 8
    assert [rows.shape for rows in encoded] == [(3, 128), (1, 128), (3, 128)]
    for rows in encoded:
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)


def test_mean_pooling_gives_one_normalized_row_per_text() -> None:
    embedder = FakeEmbedder(max_tokens=16)
    encoded = ChunkEncoder(embedder, pooling=Pooling.MEAN).encode([" ".join(FILLER), "short"])
    assert [rows.shape for rows in encoded] == [(1, 128), (1, 128)]
    np.testing.assert_allclose(np.linalg.norm(encoded[0], axis=1), 1.0, rtol=1e-5)


def test_windows_are_no_longer_than_asked_nor_than_the_embedder_reads() -> None:
    embedder = FakeEmbedder(max_tokens=16)
    text = " ".join(f"w{i}" for i in range(40))
    ChunkEncoder(embedder, window_tokens=8, overlap=0).encode([text])
    assert [len(piece.split()) for piece in embedder.embedded] == [8, 8, 8, 8, 8]
    embedder.embedded.clear()
    ChunkEncoder(embedder, window_tokens=500, overlap=0).encode([text])
    assert [len(piece.split()) for piece in embedder.embedded] == [16, 16, 8]


@pytest.mark.parametrize("pooling", list(Pooling))
def test_a_fact_in_the_last_third_is_found_with_windows_and_missed_with_truncation(
    pooling: Pooling,
) -> None:
    embedder = FakeEmbedder(dimension=128, max_tokens=16)
    fact_chunk = " ".join(FILLER) + " " + FACT  # the fact is words 30-36 of 36
    distractor = "a brass band played a march at noon"
    query = "where did the lighthouse keeper hide the brass key"

    def scores(encoder: ChunkEncoder) -> tuple[float, float]:
        fact_rows, distractor_rows = encoder.encode([fact_chunk, distractor])
        q = encoder.encode_query(query)
        return chunk_score(fact_rows, q), chunk_score(distractor_rows, q)

    windowed_fact, windowed_distractor = scores(ChunkEncoder(embedder, pooling=pooling))
    truncated_fact, truncated_distractor = scores(ChunkEncoder(embedder, truncate=True))
    assert windowed_fact > windowed_distractor
    assert truncated_fact < truncated_distractor
    assert truncated_fact == pytest.approx(0.0, abs=1e-6)  # it never read the fact at all


def test_max_pooling_is_not_diluted_by_the_rest_of_the_chunk() -> None:
    embedder = FakeEmbedder(dimension=128, max_tokens=16)
    text = " ".join(FILLER) + " " + FACT
    query = "lighthouse keeper brass key"
    q_max = ChunkEncoder(embedder).encode_query(query)
    best = chunk_score(ChunkEncoder(embedder).encode([text])[0], q_max)
    mean = chunk_score(ChunkEncoder(embedder, pooling=Pooling.MEAN).encode([text])[0], q_max)
    assert best > mean


def test_encoder_ids_tell_every_way_of_encoding_apart() -> None:
    embedder = FakeEmbedder()
    encoders = [
        ChunkEncoder(embedder),
        ChunkEncoder(embedder, truncate=True),
        ChunkEncoder(embedder, pooling=Pooling.MEAN),
        ChunkEncoder(embedder, window_tokens=64),
        ChunkEncoder(embedder, overlap=4),
    ]
    assert len({e.id for e in encoders}) == len(encoders)
    assert all(e.id.startswith(embedder.id) for e in encoders)


def test_queries_get_one_vector() -> None:
    embedder = FakeEmbedder(max_tokens=16)
    for encoder in (ChunkEncoder(embedder), ChunkEncoder(embedder, truncate=True)):
        vector = encoder.encode_query(" ".join(FILLER))
        assert vector.shape == (128,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)


def test_no_texts_and_texts_without_tokens() -> None:
    embedder = FakeEmbedder()
    encoder = ChunkEncoder(embedder)
    assert encoder.encode([]) == []
    assert embedder.calls == 0
    assert [rows.shape for rows in encoder.encode(["..."])] == [(1, embedder.dimension)]


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        window_spans([(0, 1)], 0, 0)
