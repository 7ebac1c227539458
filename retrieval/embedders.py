"""The embedder the settings name, on the runtime they name: ONNX Runtime fp32 by default.

`configured_embedder(setting, runtime, exports)` resolves the model folder ("bundled" or a
sentence-transformers folder) and returns:

- runtime "torch", or a model the exporter cannot handle: `SentenceTransformerEmbedder`;
- runtime "onnx" or "onnx-int8": an `OnnxEmbedder` on the export in `<exports>/<name>-<key>/`
  (`exports` is `<data dir>/embedders` unless `[retrieval] onnx_dir` names another folder),
  or, before the model's first export, a `PendingExport` that exports it (once, with torch,
  ~10 s) the first time it must embed.

The export folder's key hashes the model folder's path and its files' sizes and modification
times, so finding a finished export reads no weights and no torch: the query path of
`longread search` stays at onnxruntime + tokenizers. The model's content fingerprint (its
embedder id, which decides whether an index is current) is hashed once at export and kept in
the export's metadata.

The fp32 export computes torch's vectors (the export is refused unless every probe vector is
within 1e-3 cosine; in practice they agree to 1e-6), so "onnx" keeps torch's embedder id:
indexes and cached embeddings built on torch stay valid, and a library made before the ONNX
runtime is not re-embedded. int8 vectors differ (~0.99 cosine), so its id ends in
"+onnx-int8": switching to or from it rebuilds indexes (the reason is shown) rather than
comparing a query from one model with chunks from another.

It does not run models itself (dense.py, onnx_embedder.py) nor export them (onnx_export.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from retrieval.dense import BUNDLED_NAME, SentenceTransformerEmbedder, bundled_model_dir
from retrieval.embedder import Embedder
from retrieval.errors import EmbedderError
from retrieval.onnx_embedder import EXPORT_META_FILE, ExportMeta, OnnxEmbedder

EMBEDDERS_DIR = "embedders"
# The unit of the progress step that exports the embedder (once per model), as `add` shows it.
EXPORT_PROGRESS_UNIT = "embedder export to ONNX (once)"
_EXPORT_LOCK = threading.Lock()


class EmbedderRuntime(StrEnum):
    """What computes the embeddings (`[retrieval] embedder_runtime`)."""

    # The default: torch's vectors (within 1e-3 cosine, in practice 1e-6), without torch.
    ONNX = "onnx"
    # ~1.8x faster on 2 cores, but vectors at ~0.99 cosine to fp32's, which moved one of the
    # 15 dev LaRA location questions at dense hit@1 (hybrid unchanged): opt-in, not default.
    ONNX_INT8 = "onnx-int8"
    TORCH = "torch"  # sentence-transformers on torch, for models the exporter cannot handle


def exports_dir(home: Path, onnx_dir: str) -> Path:
    """Where exports live: `[retrieval] onnx_dir` if set, else `<data dir>/embedders`."""
    return Path(onnx_dir).expanduser() if onnx_dir else home / EMBEDDERS_DIR


def configured_embedder(setting: str, runtime: str, exports: Path) -> Embedder:
    """The embedder for `[retrieval] embedder` (`setting`) on `runtime`, exported into
    `exports` where ONNX runs it; cheap to call (nothing is loaded or exported yet)."""
    chosen = EmbedderRuntime(runtime)
    if setting == "bundled":
        model_dir, name = bundled_model_dir(), BUNDLED_NAME
    else:
        model_dir = Path(setting).expanduser()
        name = model_dir.name
    from retrieval.onnx_export import unsupported_reason  # small: the export itself is lazy

    if chosen is EmbedderRuntime.TORCH or unsupported_reason(model_dir) is not None:
        return SentenceTransformerEmbedder(model_dir, name=name)
    folder = export_folder(exports, model_dir, name)
    if (folder / EXPORT_META_FILE).is_file():
        return _exported(folder, chosen)
    return PendingExport(SentenceTransformerEmbedder(model_dir, name=name), folder, chosen)


def export_ahead(embedder: Embedder) -> Callable[[], object] | None:
    """What exports this embedder's model now, if its first use would (slow, once), so a
    caller can say so first; None when nothing needs exporting."""
    if isinstance(embedder, PendingExport) and embedder.needs_export:
        return embedder.onnx
    return None


def export_folder(exports: Path, model_dir: Path, name: str) -> Path:
    """Where the export of this model folder lives, keyed by its files' paths, sizes and times."""
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    if model_dir.is_dir():
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            stat = path.stat()
            entry = f"\0{path.relative_to(model_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}"
            digest.update(entry.encode())
    return exports / f"{name}-{digest.hexdigest()[:16]}"


def _exported(folder: Path, runtime: EmbedderRuntime) -> OnnxEmbedder:
    from retrieval.onnx_export import FP32_FILE, INT8_FILE

    meta = ExportMeta.read(folder)
    model_file = INT8_FILE if runtime is EmbedderRuntime.ONNX_INT8 else FP32_FILE
    return OnnxEmbedder(folder, model_file, embedder_id=_runtime_id(meta.source_id, runtime))


def _runtime_id(source_id: str, runtime: EmbedderRuntime) -> str:
    """The embedder id on this runtime: the torch model's for fp32 (the same vectors)."""
    return f"{source_id}+{runtime}" if runtime is EmbedderRuntime.ONNX_INT8 else source_id


class PendingExport:
    """An ONNX embedder whose model is exported on first use. Its id is known before (from
    the torch model's), so index manifests can be checked without exporting."""

    def __init__(
        self, source: SentenceTransformerEmbedder, folder: Path, runtime: EmbedderRuntime
    ) -> None:
        self.source = source
        self.folder = folder
        self.runtime = runtime
        self._ready: OnnxEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return _runtime_id(self.source.id, self.runtime)

    @property
    def dimension(self) -> int:
        return self.source.dimension

    @property
    def max_tokens(self) -> int:
        return self.onnx().max_tokens

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.onnx().token_spans(text)

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        return self.onnx().embed(texts)

    @property
    def needs_export(self) -> bool:
        """Whether the first use will export the model (slow, once) rather than load it."""
        return self._ready is None and not (self.folder / EXPORT_META_FILE).is_file()

    def onnx(self) -> OnnxEmbedder:
        """The exported embedder, exporting the model now if no process has yet."""
        with self._lock:
            if self._ready is None:
                # torch's exporter keeps process-wide state: one export at a time per process.
                with _EXPORT_LOCK:
                    if not (self.folder / EXPORT_META_FILE).is_file():
                        self._export()
                self._ready = _exported(self.folder, self.runtime)
                if self._ready.id != self.id:
                    raise EmbedderError(
                        f"the export in {self.folder} is of another model; delete the folder"
                        " and longread exports the model again"
                    )
            return self._ready

    def _export(self) -> None:
        from retrieval.onnx_export import export_onnx

        if self.folder.exists():
            # Exports are renamed into place whole, so a folder without its metadata was
            # damaged afterwards: say so rather than fail to rename a new export onto it.
            raise EmbedderError(
                f"the exported embedder in {self.folder} is incomplete (no {EXPORT_META_FILE});"
                " delete the folder and longread exports the model again"
            )
        try:
            export_onnx(self.source, self.folder)
        except EmbedderError:
            # Another process may have finished the same export first: theirs is as good.
            if not (self.folder / EXPORT_META_FILE).is_file():
                raise
