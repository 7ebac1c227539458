"""The embedder on ONNX Runtime, against torch: the same vectors and word pieces, exports that
are atomic and keyed by the model folder's files, and clear errors for what cannot be run.

Real components throughout: torch, onnx, onnxruntime and the bundled all-MiniLM-L6-v2. An
export costs seconds, so the layout tests share one fresh export made by this module
(`fresh_export`) and the rest read the session's export in `shared_onnx_exports`. Tests that
need no model (settings, folder keys, refusals) copy the bundled folder's small files and
link its weights, and never load them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from retrieval.dense import BUNDLED_NAME, SentenceTransformerEmbedder, bundled_model_dir
from retrieval.embedder import Embedder
from retrieval.embedders import EmbedderRuntime, PendingExport, configured_embedder, export_folder
from retrieval.errors import EmbedderError
from retrieval.onnx_embedder import EXPORT_META_FILE, TOKENIZER_FILE, ExportMeta, OnnxEmbedder
from retrieval.onnx_export import FP32_FILE, INT8_FILE, export_onnx, unsupported_reason
from tests.conftest import REPO_ROOT, corpus_path

# What the fp32 export must keep to torch, per vector; float reordering alone moves ~1e-6.
FP32_COSINE_FLOOR = 1 - 1e-3
# int8 is an approximation: measured mean ~0.99 on prose; these floors catch a broken one.
INT8_MEAN_FLOOR = 0.98
INT8_MIN_FLOOR = 0.9
EXPORT_FILES = {FP32_FILE, INT8_FILE, TOKENIZER_FILE, EXPORT_META_FILE}
SCRATCH_PATTERN = ".exporting-*"

LONG_TEXT = " ".join(
    f"Sentence {n} tells of the harbor, the ships and the weather that day." for n in range(60)
)
VARIED_TEXTS = [
    "harbor",
    "What is the pass key? The pass key is 58213. Remember it.",
    "",  # nothing but [CLS] and [SEP]
    "   \n\t ",  # whitespace only: torch strips it, the tokenizer drops it
    "?!",
    "[CLS] [SEP] [MASK] [PAD]",  # special tokens written as text
    "naïve café — “quoted” résumé, Ærø, Straße",
    "東京は日本の首都です。",
    "Привет, мир! Καλημέρα κόσμε.",
    "emoji 😀🎉 and symbols ∑∫√ ©®",
    "zero\u200bwidth, joiner\u200d and soft\u00adhyphen",
    "e\u0301 and a\u0308: combining marks",
    "\u2028line and paragraph separators\u2029",
    "\x00 a nul, \x1c a file separator and \ufffd a replacement character",
    LONG_TEXT,  # ~900 word pieces: truncated to the model's 254
]


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------------------------


def ready_onnx(embedder: Embedder) -> OnnxEmbedder:
    """The OnnxEmbedder behind `configured_embedder`'s answer, exporting now if it must."""
    if isinstance(embedder, PendingExport):
        return embedder.onnx()
    assert isinstance(embedder, OnnxEmbedder), type(embedder)
    return embedder


def cosines(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """Row-wise cosine of two arrays of unit rows."""
    assert a.shape == b.shape
    products: NDArray[np.float64] = np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)
    return products.astype(np.float32)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder` (files and folders) with its size and modification time."""
    return {
        path.relative_to(folder).as_posix(): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def names(folder: Path) -> list[str]:
    """The entries directly in `folder`, hidden ones included, sorted."""
    return sorted(path.name for path in folder.iterdir())


def model_copy(parent: Path, name: str = "model") -> Path:
    """A copy of the bundled model folder: small files copied (times kept), weights linked.

    Only the copied files may be changed: the link leads into site-packages."""
    source = bundled_model_dir()
    copy = parent / name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "model.safetensors").symlink_to(source / "model.safetensors")
    return copy


def export_copy(source: Path, exports: Path) -> Path:
    """A copy of the finished export `source` where `configured_embedder(..., exports)` looks
    for it (the folder's name does not depend on `exports`): small files copied, models linked.
    """
    folder = exports / source.name
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix == ".onnx":
            (folder / path.name).symlink_to(path)
        else:
            shutil.copy2(path, folder / path.name)
    return folder


def edit_json(path: Path, change: Callable[[dict[str, object]], object]) -> None:
    """Rewrite the JSON object in `path` as `change` leaves it (the link, if any, is replaced)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.unlink()
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def weight_matmuls(path: Path) -> tuple[str, int]:
    """The kind and count of the matrix products whose right side is a stored weight (six
    per layer of the bundled model: query, key, value, output and the feed-forward pair)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    kinds = [
        node.op_type
        for node in graph.node
        if node.op_type in ("MatMul", "MatMulInteger") and node.input[1] in weights
    ]
    return (kinds[0] if len(set(kinds)) == 1 else "mixed", len(kinds))


def print_figures(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    """Show measured figures in the test output even when pytest captures it."""
    with capsys.disabled():
        print()
        for line in lines:
            print(f"  {line}")


@pytest.fixture(scope="module")
def shared_int8(int8_embedder: Embedder) -> OnnxEmbedder:
    """The bundled model on ONNX int8, from the session's shared export."""
    return ready_onnx(int8_embedder)


@pytest.fixture(scope="module")
def shared_fp32(shared_int8: OnnxEmbedder, shared_onnx_exports: Path) -> OnnxEmbedder:
    """The fp32 model of the same shared export."""
    embedder = configured_embedder("bundled", EmbedderRuntime.ONNX, shared_onnx_exports)
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


@dataclass(frozen=True)
class FreshExport:
    """One export made by this module into an empty folder, through the product's path."""

    exports: Path
    pending: PendingExport
    embedder: OnnxEmbedder
    package_before: dict[str, tuple[int, int]]
    package_after: dict[str, tuple[int, int]]
    seconds: float


@pytest.fixture(scope="module")
def fresh_export(tmp_path_factory: pytest.TempPathFactory) -> FreshExport:
    """Export the bundled model into a fresh folder, noting the model's package folder around it."""
    exports = tmp_path_factory.mktemp("fresh-exports")
    package = bundled_model_dir().parent
    before = snapshot(package)
    pending = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports)
    assert isinstance(pending, PendingExport), "an empty folder has no export to find"
    start = time.perf_counter()
    embedder = pending.onnx()
    seconds = time.perf_counter() - start
    return FreshExport(exports, pending, embedder, before, snapshot(package), seconds)


# ---------------------------------------------------------------------------------------------
# ONNX computes what torch computes, and cuts the same word pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.embedder
@pytest.mark.slow
def test_fp32_vectors_match_torch_on_varied_texts(
    real_embedder: SentenceTransformerEmbedder,
    shared_fp32: OnnxEmbedder,
    shared_int8: OnnxEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spans = real_embedder.token_spans(LONG_TEXT)
    limit = real_embedder.max_tokens
    assert len(spans) > 2 * limit, "the long text must be truncated"
    torch_vectors = real_embedder.embed(VARIED_TEXTS)
    fp32 = shared_fp32.embed(VARIED_TEXTS)
    int8 = shared_int8.embed(VARIED_TEXTS)
    assert fp32.dtype == np.float32
    assert fp32.shape == int8.shape == (len(VARIED_TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, rtol=1e-5)
    fp32_cos, int8_cos = cosines(fp32, torch_vectors), cosines(int8, torch_vectors)
    print_figures(
        capsys,
        f"varied texts ({len(VARIED_TEXTS)}): fp32 vs torch min cosine {fp32_cos.min():.7f}",
        f"varied texts: int8 vs torch mean {int8_cos.mean():.4f}, min {int8_cos.min():.4f}",
    )
    worst = {VARIED_TEXTS[i][:40]: float(fp32_cos[i]) for i in np.flatnonzero(fp32_cos < 0.999)}
    assert fp32_cos.min() >= FP32_COSINE_FLOOR, worst
    assert int8_cos.mean() >= INT8_MEAN_FLOOR
    assert int8_cos.min() >= INT8_MIN_FLOOR
    # The long text is read to exactly max_tokens pieces: its vector is its prefix's.
    prefix = LONG_TEXT[: spans[limit - 1][1]]
    assert real_embedder.token_spans(prefix) == spans[:limit]
    whole, cut = shared_fp32.embed([LONG_TEXT, prefix])
    assert float(whole @ cut) >= 1 - 1e-5
    # Batching and order do not change a vector: one at a time gives the same rows.
    alone = np.vstack([shared_fp32.embed([text]) for text in VARIED_TEXTS[:4]])
    np.testing.assert_allclose(alone, fp32[:4], atol=1e-5)
    assert shared_fp32.embed([]).shape == (0, 384)


def corpus_paragraphs(count: int = 16) -> list[str]:
    """`count` paragraphs spread through a corpus book, plus its longest (well over 256 pieces)."""
    book = corpus_path() / "books" / "The Time Machine.txt"
    paragraphs = [
        " ".join(p.split()) for p in book.read_text(encoding="utf-8").split("\n\n") if p.strip()
    ]
    prose = [p for p in paragraphs if len(p) > 80]
    step = max(1, len(prose) // count)
    return [*prose[::step][:count], max(prose, key=len)]


@pytest.mark.corpus
@pytest.mark.embedder
@pytest.mark.slow
def test_fp32_and_int8_on_corpus_prose(
    real_embedder: SentenceTransformerEmbedder,
    shared_fp32: OnnxEmbedder,
    shared_int8: OnnxEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = corpus_paragraphs()
    assert len(real_embedder.token_spans(texts[-1])) > real_embedder.max_tokens
    torch_vectors = real_embedder.embed(texts)
    fp32_cos = cosines(shared_fp32.embed(texts), torch_vectors)
    int8_cos = cosines(shared_int8.embed(texts), torch_vectors)
    print_figures(
        capsys,
        f"corpus prose ({len(texts)} paragraphs): fp32 vs torch min cosine {fp32_cos.min():.7f}",
        f"corpus prose: int8 vs torch mean {int8_cos.mean():.4f}, min {int8_cos.min():.4f}",
    )
    assert fp32_cos.min() >= FP32_COSINE_FLOOR
    assert int8_cos.mean() >= INT8_MEAN_FLOOR
    assert int8_cos.min() >= INT8_MIN_FLOOR
    # Windows are cut by these spans: ONNX must cut exactly where torch does.
    for text in texts:
        assert shared_int8.token_spans(text) == real_embedder.token_spans(text), text[:60]


@pytest.mark.embedder
@pytest.mark.slow
def test_token_spans_max_tokens_and_dimension_match_torch(
    real_embedder: SentenceTransformerEmbedder,
    shared_fp32: OnnxEmbedder,
    shared_int8: OnnxEmbedder,
) -> None:
    assert shared_int8.max_tokens == shared_fp32.max_tokens == real_embedder.max_tokens == 254
    assert shared_int8.dimension == shared_fp32.dimension == real_embedder.dimension == 384
    for text in VARIED_TEXTS:
        expected = real_embedder.token_spans(text)
        assert shared_int8.token_spans(text) == expected, text[:40]
        assert shared_fp32.token_spans(text) == expected, text[:40]
    assert len(shared_int8.token_spans(LONG_TEXT)) > 3 * shared_int8.max_tokens
    assert shared_int8.token_spans("") == []


@pytest.mark.embedder
@pytest.mark.slow
def test_ids_tell_int8_apart_keep_torchs_for_fp32_and_are_stable(
    shared_int8: OnnxEmbedder, shared_onnx_exports: Path, tmp_path: Path
) -> None:
    def ids() -> dict[EmbedderRuntime, str]:
        return {
            runtime: configured_embedder("bundled", runtime, shared_onnx_exports).id
            for runtime in EmbedderRuntime
        }

    first, second = ids(), ids()
    assert first == second
    torch_id = first[EmbedderRuntime.TORCH]
    assert torch_id == SentenceTransformerEmbedder.bundled().id
    # fp32 ONNX computes torch's vectors (checked above), so indexes built on either serve
    # both; int8's differ, so its vectors must never be compared with theirs.
    assert first[EmbedderRuntime.ONNX] == torch_id
    assert first[EmbedderRuntime.ONNX_INT8] == f"{torch_id}+onnx-int8" == shared_int8.id
    # Before any export, the pending embedder already answers with the id it will have.
    pending = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, tmp_path / "exports")
    assert isinstance(pending, PendingExport)
    assert pending.id == shared_int8.id
    assert not (tmp_path / "exports").exists(), "asking for the id exported nothing"


# ---------------------------------------------------------------------------------------------
# The export folder: layout, reuse, key, and the model's own folder left alone
# ---------------------------------------------------------------------------------------------


@pytest.mark.embedder
@pytest.mark.slow
def test_a_fresh_export_writes_its_files_and_no_scratch(
    fresh_export: FreshExport,
    real_embedder: SentenceTransformerEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exports, embedder = fresh_export.exports, fresh_export.embedder
    print_figures(capsys, f"fresh export (torch loaded): {fresh_export.seconds:.1f} s")
    folder = export_folder(exports, bundled_model_dir(), BUNDLED_NAME)
    assert names(exports) == [folder.name], "one export folder, no .exporting-* scratch"
    assert list(exports.rglob(SCRATCH_PATTERN)) == []
    assert embedder.folder == folder
    assert set(names(folder)) == EXPORT_FILES
    # int8 really is quantized: every MatMul by a weight became an integer one.
    assert weight_matmuls(folder / FP32_FILE) == ("MatMul", 36)
    assert weight_matmuls(folder / INT8_FILE) == ("MatMulInteger", 36)
    tokenizer = (folder / TOKENIZER_FILE).read_bytes()
    assert tokenizer == (bundled_model_dir() / TOKENIZER_FILE).read_bytes()
    meta = ExportMeta.read(folder)
    assert meta.source_id == real_embedder.id
    assert (meta.dimension, meta.max_seq_length, meta.pooling) == (384, 256, "mean")
    assert meta.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert embedder.id == fresh_export.pending.id == f"{real_embedder.id}+onnx-int8"


@pytest.mark.embedder
@pytest.mark.slow
def test_the_export_leaves_the_model_package_folder_unchanged(fresh_export: FreshExport) -> None:
    assert fresh_export.package_before, "the package folder was listed"
    assert fresh_export.package_after == fresh_export.package_before


@pytest.mark.embedder
@pytest.mark.slow
def test_a_finished_export_is_found_without_torch_and_not_redone(
    fresh_export: FreshExport,
) -> None:
    exports, folder = fresh_export.exports, fresh_export.embedder.folder
    before = snapshot(exports)
    again = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports)
    assert isinstance(again, OnnxEmbedder)
    assert again.folder == folder
    assert again.id == fresh_export.embedder.id
    np.testing.assert_array_equal(
        again.embed(VARIED_TEXTS[:3]), fresh_export.embedder.embed(VARIED_TEXTS[:3])
    )
    # A new process finds it with onnxruntime alone: no torch, so nothing can be exported.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from retrieval.embedders import configured_embedder\n"
        "embedder = configured_embedder('bundled', sys.argv[1], Path(sys.argv[2]))\n"
        "vectors = embedder.embed(['the harbor at dawn'])\n"
        "print(type(embedder).__name__, vectors.shape[1], 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "onnx-int8", str(exports)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OnnxEmbedder", "384", "False"]
    assert snapshot(exports) == before, "nothing was written or exported again"


@pytest.mark.embedder
@pytest.mark.slow
def test_fp32_and_int8_read_one_export_folder_and_different_files(
    fresh_export: FreshExport,
) -> None:
    exports = fresh_export.exports
    fp32 = configured_embedder("bundled", EmbedderRuntime.ONNX, exports)
    int8 = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports)
    assert isinstance(fp32, OnnxEmbedder)
    assert isinstance(int8, OnnxEmbedder)
    assert fp32.folder == int8.folder == fresh_export.embedder.folder
    assert (fp32.model_path.name, int8.model_path.name) == (FP32_FILE, INT8_FILE)
    texts = VARIED_TEXTS[:2]
    fp32_vectors, int8_vectors = fp32.embed(texts), int8.embed(texts)
    # Close, but not the same model: int8 weights move every vector a little.
    assert cosines(fp32_vectors, int8_vectors).min() > 0.95
    assert np.abs(fp32_vectors - int8_vectors).max() > 1e-4


def test_the_export_folder_follows_the_model_files(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    copy = model_copy(tmp_path)
    key = export_folder(exports, copy, BUNDLED_NAME)
    assert export_folder(exports, copy, BUNDLED_NAME) == key, "stable for unchanged files"
    assert key.parent == exports
    assert key.name.startswith(f"{BUNDLED_NAME}-")
    assert key != export_folder(exports, bundled_model_dir(), BUNDLED_NAME), "another folder"
    config = copy / "config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = export_folder(exports, copy, BUNDLED_NAME)
    assert touched != key, "a changed modification time is another model"
    with config.open("a", encoding="utf-8") as handle:
        handle.write(" ")
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert export_folder(exports, copy, BUNDLED_NAME) not in (key, touched), "a changed size"


# ---------------------------------------------------------------------------------------------
# Failure modes: clear errors, nothing half-made
# ---------------------------------------------------------------------------------------------


def test_a_scratch_folder_left_by_a_killed_export_is_not_an_export(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    folder = export_folder(exports, bundled_model_dir(), BUNDLED_NAME)
    # What a kill after the metadata, before the rename, leaves behind.
    scratch = exports / f".exporting-{folder.name}-k1ll3d"
    scratch.mkdir(parents=True)
    meta = ExportMeta(folder.name, 384, 256, "mean", ("input_ids", "attention_mask"))
    (scratch / EXPORT_META_FILE).write_text(meta.to_json(), encoding="utf-8")
    (scratch / FP32_FILE).write_bytes(b"\x08\x07half a model")
    embedder = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports)
    assert isinstance(embedder, PendingExport), "the scratch folder was taken for an export"
    assert embedder.folder == folder
    assert not folder.exists()


def _cut_short(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).unlink()
        (folder / name).write_bytes(data[: len(data) // 3])

    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _meta_change(change: Callable[[dict[str, object]], object]) -> Callable[[Path], None]:
    return lambda folder: edit_json(folder / EXPORT_META_FILE, change)


DAMAGES = [
    pytest.param(_cut_short(EXPORT_META_FILE), "onnx-int8", id="export.json cut short"),
    pytest.param(
        _meta_change(lambda meta: meta.pop("pooling")), "onnx-int8", id="export.json field lost"
    ),
    pytest.param(
        _meta_change(lambda meta: meta.update(pooling="max")), "onnx", id="export.json max pooling"
    ),
    pytest.param(
        _meta_change(lambda meta: meta.update(dimension=385)), "onnx", id="export.json dimension"
    ),
    pytest.param(
        _meta_change(lambda meta: meta.update(input_names=["input_ids", "position_ids"])),
        "onnx-int8",
        id="export.json input names",
    ),
    pytest.param(_cut_short(FP32_FILE), "onnx", id="model.onnx cut short"),
    pytest.param(_cut_short(INT8_FILE), "onnx-int8", id="model-int8.onnx cut short"),
    pytest.param(_remove(TOKENIZER_FILE), "onnx-int8", id="tokenizer.json missing"),
    pytest.param(_cut_short(TOKENIZER_FILE), "onnx", id="tokenizer.json cut short"),
]


@pytest.mark.embedder
@pytest.mark.slow
@pytest.mark.parametrize(("damage", "runtime"), DAMAGES)
def test_a_damaged_export_says_to_delete_its_folder(
    shared_int8: OnnxEmbedder,
    tmp_path: Path,
    damage: Callable[[Path], None],
    runtime: str,
) -> None:
    exports = tmp_path / "exports"
    folder = export_copy(shared_int8.folder, exports)
    damage(folder)
    before = snapshot(exports)
    with pytest.raises(EmbedderError) as raised:
        configured_embedder("bundled", runtime, exports).embed(["the harbor at dawn"])
    message = str(raised.value)
    assert str(folder) in message
    assert "delete" in message
    assert snapshot(exports) == before, "nothing exported, written or removed"


@pytest.mark.embedder
@pytest.mark.slow
def test_an_export_folder_without_its_metadata_says_to_delete_it(
    shared_int8: OnnxEmbedder, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    folder = export_copy(shared_int8.folder, exports)
    (folder / EXPORT_META_FILE).unlink()
    before = snapshot(exports)
    with pytest.raises(EmbedderError) as raised:
        configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports).embed(["harbor"])
    assert snapshot(exports) == before, "no scratch left, the folder as it was"
    message = str(raised.value)
    assert str(folder) in message
    assert "delete" in message


def _add_dense(model: Path) -> None:
    modules = json.loads((model / "modules.json").read_text(encoding="utf-8"))
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (model / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (model / "3_Dense").mkdir()
    config = {"in_features": 384, "out_features": 128, "bias": True}
    (model / "3_Dense" / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _pool_by(mode: str) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        path = model / "1_Pooling" / "config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        for key in config:
            if key.startswith("pooling_mode_"):
                config[key] = key == mode
        path.write_text(json.dumps(config), encoding="utf-8")

    return change


def _garble_modules(model: Path) -> None:
    (model / "modules.json").write_text("[{", encoding="utf-8")


UNSUPPORTED = [
    pytest.param(_add_dense, "Dense", id="dense module"),
    pytest.param(_pool_by("pooling_mode_max_tokens"), "pooling", id="max pooling"),
    pytest.param(_pool_by("pooling_mode_mean_sqrt_len_tokens"), "pooling", id="sqrt pooling"),
    pytest.param(
        lambda model: (model / TOKENIZER_FILE).unlink(), "tokenizer.json", id="no tokenizer.json"
    ),
    pytest.param(_garble_modules, "modules.json", id="modules.json garbled"),
]


@pytest.mark.parametrize(("change", "said"), UNSUPPORTED)
def test_a_model_onnx_cannot_run_says_why_and_runs_on_torch(
    tmp_path: Path, change: Callable[[Path], None], said: str
) -> None:
    model = model_copy(tmp_path)
    assert unsupported_reason(model) is None, "the unchanged copy is exportable"
    change(model)
    reason = unsupported_reason(model)
    assert reason is not None
    assert said in reason
    exports = tmp_path / "exports"
    for runtime in EmbedderRuntime:
        embedder = configured_embedder(str(model), runtime, exports)
        assert isinstance(embedder, SentenceTransformerEmbedder), runtime
        assert embedder.model_dir == model
        assert "+" not in embedder.id
    # Asked directly, the exporter refuses before writing anything.
    with pytest.raises(EmbedderError, match=r"cannot run on ONNX.*embedder_runtime = \"torch\""):
        export_onnx(SentenceTransformerEmbedder(model), exports / "target")
    assert not exports.exists()


@pytest.mark.embedder
@pytest.mark.slow
def test_a_model_torch_cannot_trace_is_a_clear_error_and_leaves_nothing(
    real_embedder: SentenceTransformerEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def untraceable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::unheard_of' is not supported")

    # A layout the exporter accepts, an architecture torch.onnx cannot trace.
    monkeypatch.setattr(torch.onnx, "export", untraceable)
    exports = tmp_path / "exports"
    with pytest.raises(EmbedderError) as raised:
        export_onnx(real_embedder, exports / "target")
    message = str(raised.value)
    assert "could not be exported to ONNX" in message
    assert "unheard_of" in message
    assert 'embedder_runtime = "torch"' in message
    assert names(exports) == [], "no export and no scratch left"


def test_a_cls_pooled_model_can_be_exported(tmp_path: Path) -> None:
    model = model_copy(tmp_path)
    _pool_by("pooling_mode_cls_token")(model)
    assert unsupported_reason(model) is None


def test_the_torch_runtime_gives_the_torch_embedder(tmp_path: Path) -> None:
    embedder = configured_embedder("bundled", EmbedderRuntime.TORCH, tmp_path / "exports")
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_dir == bundled_model_dir()
    assert embedder.id.startswith(f"{BUNDLED_NAME}@")
    assert "+" not in embedder.id
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("runtime", ["fp16", "ONNX", "onnx_int8", ""])
def test_an_unknown_runtime_is_refused(tmp_path: Path, runtime: str) -> None:
    with pytest.raises(ValueError, match="is not a valid EmbedderRuntime"):
        configured_embedder("bundled", runtime, tmp_path)
    assert names(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Two exports of one model at once
# ---------------------------------------------------------------------------------------------


@pytest.mark.embedder
@pytest.mark.slow
def test_two_pending_exports_in_threads_share_one_export(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    pending = [
        configured_embedder("bundled", runtime, exports)
        for runtime in (EmbedderRuntime.ONNX_INT8, EmbedderRuntime.ONNX)
    ]
    assert all(isinstance(p, PendingExport) for p in pending)
    # Loaded first, so both threads reach the export itself at the same moment.
    for one in pending:
        assert isinstance(one, PendingExport)
        assert one.source.max_tokens > 0  # loads torch and the model
    barrier = threading.Barrier(len(pending))

    def embed(embedder: Embedder) -> NDArray[np.float32]:
        barrier.wait()
        return embedder.embed(["the harbor at dawn"])

    with ThreadPoolExecutor(len(pending)) as pool:
        futures = [pool.submit(embed, one) for one in pending]
        errors = [future.exception() for future in futures]
    assert errors == [None, None]
    int8, fp32 = (future.result() for future in futures)
    assert cosines(int8, fp32).min() > 0.95
    folder = export_folder(exports, bundled_model_dir(), BUNDLED_NAME)
    assert names(exports) == [folder.name], "one export folder and no scratch left"
    assert set(names(folder)) == EXPORT_FILES


_RACER = """
import sys, time
from pathlib import Path
from retrieval.embedders import PendingExport, configured_embedder

exports, rendezvous = Path(sys.argv[1]), Path(sys.argv[2])
pending = configured_embedder("bundled", "onnx-int8", exports)
assert isinstance(pending, PendingExport), type(pending)
pending.source.max_tokens  # loads torch and the model
(rendezvous / "racer").touch()
deadline = time.monotonic() + 120
while not (rendezvous / "test").exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("exported-before", (pending.folder / "export.json").is_file())
vector = pending.embed(["the harbor at dawn"])[0]
print("id", pending.onnx().id)
print("folder", pending.onnx().folder)
print("vector", ",".join(f"{x:.6f}" for x in vector[:8]))
"""


@pytest.mark.embedder
@pytest.mark.slow
def test_an_export_racing_another_process_ends_on_the_winners_export(tmp_path: Path) -> None:
    """This process and another export the same model at once (the race two `longread`
    commands run on a first use): one rename wins, the loser's fails and it uses the winner's.
    """
    exports, rendezvous = tmp_path / "exports", tmp_path / "rendezvous"
    rendezvous.mkdir()
    mine = configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, exports)
    assert isinstance(mine, PendingExport)
    # Loaded first, so that both start exporting at the same moment.
    assert mine.source.max_tokens > 0
    racer = subprocess.Popen(
        [sys.executable, "-c", _RACER, str(exports), str(rendezvous)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (rendezvous / "racer").exists():
            assert racer.poll() is None, "the racing process ended before the export"
            assert time.monotonic() < deadline, "the racing process never got ready"
            time.sleep(0.01)
        (rendezvous / "test").touch()
        assert not (mine.folder / EXPORT_META_FILE).is_file()
        my_vector = mine.embed(["the harbor at dawn"])[0]
        out, err = racer.communicate(timeout=120)
    finally:
        if racer.poll() is None:
            racer.kill()
            racer.communicate()
    assert racer.returncode == 0, err
    report = dict(line.partition(" ")[::2] for line in out.splitlines())
    # Both found no export and exported: one rename won, the other lost and used the winner's.
    assert report["exported-before"] == "False"
    folder = export_folder(exports, bundled_model_dir(), BUNDLED_NAME)
    assert report["folder"] == str(folder) == str(mine.onnx().folder)
    assert report["id"] == mine.id
    assert report["vector"] == ",".join(f"{x:.6f}" for x in my_vector[:8])
    assert names(exports) == [folder.name], "one export folder and no scratch left"
    assert set(names(folder)) == EXPORT_FILES
    assert isinstance(configured_embedder("bundled", "onnx-int8", exports), OnnxEmbedder)


# ---------------------------------------------------------------------------------------------
# What a person sees
# ---------------------------------------------------------------------------------------------


@pytest.mark.embedder
@pytest.mark.slow
def test_the_first_add_says_it_exports_the_embedder_and_the_next_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli_runner import invoke

    exports = tmp_path / "exports"
    monkeypatch.setenv("LONGREAD_RETRIEVAL_ONNX_DIR", str(exports))
    books = []
    for name, text in (("harbor", "The harbor froze that winter."), ("mill", "The mill burned.")):
        books.append(tmp_path / f"{name}.txt")
        books[-1].write_text(f"{text}\n\n" * 20, encoding="utf-8")

    first = invoke("add", str(books[0]))
    assert first.exit_code == 0, first.output
    assert "exporting it to ONNX, once" in first.output
    assert [p.name for p in exports.iterdir() if (p / EXPORT_META_FILE).is_file()]

    second = invoke("add", str(books[1]))
    assert second.exit_code == 0, second.output
    assert "exporting" not in second.output
    found = invoke("search", "harbor", "frozen harbor", "-k", "1")
    assert found.exit_code == 0 and "froze" in found.output
