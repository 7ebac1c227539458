"""Run an exported sentence-transformers model on ONNX Runtime, without torch or transformers.

`OnnxEmbedder` reads a folder written by retrieval/onnx_export.py: the transformer as ONNX
(fp32 `model.onnx`, or its dynamically quantized `model-int8.onnx`), the model's own
`tokenizer.json` (run by the Rust `tokenizers` library, the same one transformers' fast
tokenizer wraps, so word pieces and offsets are identical) and `export.json`, which says
how the model pools and how many word pieces it reads. It pools and L2-normalizes in numpy,
as sentence-transformers does. Importing onnxruntime and tokenizers takes about 0.1 s, against
about 5 s for sentence_transformers and torch: that is what lets `longread search` answer in
about a second as a whole process.

Texts are embedded longest first in small batches: batches of similar length waste little
on padding, and small ones keep the working set in cache (8 windows of 128 pieces ran about
1.3x faster than 32 on a 2-core machine).

It does not export models (onnx_export.py does), window texts (windows.py does), or choose
between ONNX and torch (embedders.py does).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from retrieval.errors import EmbedderError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

EXPORT_META_FILE = "export.json"
TOKENIZER_FILE = "tokenizer.json"
# Texts per ONNX Runtime call; see the module docstring for why small.
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class ExportMeta:
    """What an export folder holds, as onnx_export.py wrote it into `export.json`."""

    source_id: str  # the sentence-transformers folder's id (name@fingerprint of its files)
    dimension: int
    max_seq_length: int  # word pieces the model reads per text, specials included
    pooling: str  # "mean" or "cls"
    input_names: tuple[str, ...]  # what the ONNX graph takes, of input_ids/attention_mask/...

    def to_json(self) -> str:
        return json.dumps(
            {
                "source_id": self.source_id,
                "dimension": self.dimension,
                "max_seq_length": self.max_seq_length,
                "pooling": self.pooling,
                "input_names": list(self.input_names),
            },
            indent=2,
        )

    @classmethod
    def read(cls, folder: Path) -> ExportMeta:
        """The folder's metadata; EmbedderError when it is missing or not what we wrote."""
        path = folder / EXPORT_META_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            meta = cls(
                source_id=str(raw["source_id"]),
                dimension=int(raw["dimension"]),
                max_seq_length=int(raw["max_seq_length"]),
                pooling=str(raw["pooling"]),
                input_names=tuple(str(name) for name in raw["input_names"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise EmbedderError(
                f"the exported embedder in {folder} is unreadable ({error}); delete the folder"
                " and longread exports the model again"
            ) from error
        known_inputs = {"input_ids", "attention_mask", "token_type_ids"}
        if (
            meta.pooling not in ("mean", "cls")
            or meta.dimension < 1
            or meta.max_seq_length < 3
            or "input_ids" not in meta.input_names
            or not set(meta.input_names) <= known_inputs
        ):
            raise EmbedderError(
                f"the exported embedder in {folder} describes a model longread cannot run"
                f" ({path.name}); delete the folder and longread exports the model again"
            )
        return meta


class OnnxEmbedder:
    """An exported model folder on ONNX Runtime. Cheap to create: the session and tokenizer
    load on first use. Safe to share across threads (calls run one at a time)."""

    def __init__(
        self,
        folder: Path,
        model_file: str,
        *,
        embedder_id: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        self.folder = folder
        self.model_path = folder / model_file
        self.meta = ExportMeta.read(folder)
        self.batch_size = batch_size
        self.threads = threads
        self._id = embedder_id
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._specials = 0
        # One call at a time: ONNX Runtime already uses every core it is given, and a
        # tokenizer whose truncation and padding are set per call must not be shared mid-call.
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self._id

    @property
    def dimension(self) -> int:
        return self.meta.dimension

    @property
    def max_tokens(self) -> int:
        with self._lock:
            self._load()
            return self.meta.max_seq_length - self._specials

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            tokenizer = self._load()
            tokenizer.no_truncation()
            tokenizer.no_padding()
            encoding = tokenizer.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        longest_first = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        with self._lock:
            self._load()
            for offset in range(0, len(texts), self.batch_size):
                batch = longest_first[offset : offset + self.batch_size]
                vectors[batch] = self._embed_batch([texts[index] for index in batch])
        return vectors

    def _embed_batch(self, texts: list[str]) -> NDArray[np.float32]:
        tokenizer = self._load()
        tokenizer.enable_truncation(self.meta.max_seq_length)
        tokenizer.enable_padding()  # to the batch's longest text
        encodings = tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {name: inputs[name] for name in self.meta.input_names}
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        if hidden.ndim != 3 or hidden.shape[:2] != ids.shape or hidden.shape[2] != self.dimension:
            raise EmbedderError(
                f"the exported embedder {self.model_path} returned shape {hidden.shape} for"
                f" {ids.shape} word pieces; delete {self.folder} and longread exports it again"
            )
        if self.meta.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalized: NDArray[np.float32] = (pooled / np.where(norms > 0, norms, 1.0)).astype(
            np.float32
        )
        return normalized

    def _load(self) -> Tokenizer:
        if self._tokenizer is None:
            self._session = _session(self.model_path, self.threads)
            self._tokenizer = _tokenizer(self.folder / TOKENIZER_FILE)
            # tokenizer.json may carry fixed padding and truncation (this model's: 128);
            # each call sets its own, so start from none.
            self._tokenizer.no_padding()
            self._tokenizer.no_truncation()
            self._specials = len(self._tokenizer.encode("", add_special_tokens=True).ids)
        return self._tokenizer


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime  # deferred: only a search or an index build needs it

    options = onnxruntime.SessionOptions()
    if threads:  # else ONNX Runtime's own default: one thread per physical core
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle threads sleep rather than spin, as main.py asks of OpenMP: with llama.cpp or any
    # other work on the cores, spinning threads starve it and themselves (fp32 windows/s on
    # 2 busy cores: 20 spinning, 32 sleeping).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: warnings would scribble on the TUI
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped Fail/InvalidGraph errors
        raise EmbedderError(
            f"the exported embedder {path} cannot be loaded ({error}); delete {path.parent}"
            " and longread exports the model again"
        ) from error


def _tokenizer(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises a bare Exception
        raise EmbedderError(
            f"the tokenizer {path} cannot be read ({error}); delete {path.parent} and longread"
            " exports the model again"
        ) from error
