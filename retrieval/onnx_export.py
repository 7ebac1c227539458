"""Export a sentence-transformers model to ONNX once, check it, and quantize it to int8.

`export_onnx` takes a `SentenceTransformerEmbedder` (torch) and has it write its transformer
as `model.onnx` (dense.py `write_onnx`, torch's TorchScript exporter, dynamic batch and length
axes), adds the model's `tokenizer.json` and `export.json`, then embeds probe texts both
ways and refuses the export unless every ONNX vector is within 1e-3 cosine of torch's. It then
writes `model-int8.onnx` with ONNX Runtime's dynamic quantization: int8 weights per output
channel, activations quantized on the fly. Per channel matters: on 300 windows of a corpus
book, per-tensor int8 kept a mean cosine of 0.948 (min 0.889) to fp32, per-channel 0.992
(min 0.961), at the same speed (about 1.8x fp32 on 2 cores).

Everything is written into a temporary folder beside `target` and renamed into place, so a
kill mid-export leaves no half folder that looks finished. The export needs torch (through
dense.py, the one module that imports it) and onnx (through torch.onnx and the quantizer).

Only models made of a Transformer, then mean or CLS Pooling, then optionally Normalize (the
common sentence-transformers layout, all-MiniLM-L6-v2's) with a fast tokenizer are exported;
`unsupported_reason` says why another is not, and such a model runs on torch.

It does not decide when to export or which file to run (embedders.py does).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.dense import SentenceTransformerEmbedder
from retrieval.errors import EmbedderError
from retrieval.onnx_embedder import EXPORT_META_FILE, TOKENIZER_FILE, ExportMeta, OnnxEmbedder

FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
# An fp32 export computes what torch computes; float reordering alone moves a cosine ~1e-6.
MAX_FP32_COSINE_GAP = 1e-3
_MODULE_TYPES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)
_SCRATCH_PREFIX = ".exporting-"
_ABANDONED_AFTER_SECONDS = 3600.0
# Probe texts for the check: short and long, prose and numbers, so padding and truncation
# are both exercised in one batch.
_PROBES = (
    "It is a truth universally acknowledged.",
    "Chapter 12. The ball at Netherfield, 26 November 1811, and what Mr. Darcy said there. " * 9,
    "What is the pass key? The pass key is 58213. Remember it.",
    "naïve café, résumé; em—dash and “quotes”",
)


def unsupported_reason(model_dir: Path) -> str | None:
    """Why this sentence-transformers folder cannot be exported, or None if it can be.

    Reads only small JSON files: no torch, no weights."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        types = [str(module["type"]) for module in modules]
    except (OSError, ValueError, KeyError, TypeError):
        return "it has no readable modules.json"
    if not types or types[0] != _MODULE_TYPES[0] or not set(types) <= set(_MODULE_TYPES):
        return (
            f"its modules ({', '.join(t.rsplit('.', 1)[-1] for t in types)}) are not only a"
            " transformer, pooling and normalization"
        )
    if not (model_dir / TOKENIZER_FILE).is_file():
        return "it has no tokenizer.json (a fast tokenizer)"
    if _pooling(model_dir, modules) is None:
        return "its pooling is neither mean nor CLS"
    return None


def export_onnx(embedder: SentenceTransformerEmbedder, target: Path) -> None:
    """Write the export folder `target` (which must not exist yet) from this torch embedder.

    Raises EmbedderError when the model cannot be exported or the export does not compute
    what torch computes; nothing is left at `target` then."""
    reason = unsupported_reason(embedder.model_dir)
    if reason is not None:
        raise EmbedderError(
            f"the embedding model in {embedder.model_dir} cannot run on ONNX:"
            f' {reason}; set [retrieval] embedder_runtime = "torch"'
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_scratch(target.parent)
    scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{target.name}-", dir=target.parent))
    try:
        meta = _export_fp32(embedder, scratch)
        _check_against_torch(embedder, scratch, meta)
        _quantize(scratch / FP32_FILE, scratch / INT8_FILE)
        scratch.rename(target)
    except OSError as error:
        raise EmbedderError(
            f"the embedding model could not be written to {target.parent} ({error}); check"
            " the data dir's free space and permissions"
        ) from error
    # What torch.onnx and the quantizer raise for an architecture they cannot trace or
    # rewrite; the model still runs on torch.
    except (RuntimeError, ValueError, TypeError) as error:
        raise EmbedderError(
            f"the embedding model in {embedder.model_dir} could not be exported to ONNX"
            f' ({error}); set [retrieval] embedder_runtime = "torch"'
        ) from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_abandoned_scratch(folder: Path) -> None:
    """Delete scratch folders of exports killed mid-way (~150 MB each). One younger than
    an hour may be another process's export in progress, so it stays."""
    now = time.time()
    for scratch in folder.glob(f"{_SCRATCH_PREFIX}*"):
        try:
            if now - scratch.stat().st_mtime > _ABANDONED_AFTER_SECONDS:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError:
            continue  # gone already: another process cleaned it


def _export_fp32(embedder: SentenceTransformerEmbedder, folder: Path) -> ExportMeta:
    accepted = embedder.write_onnx(folder / FP32_FILE)
    shutil.copyfile(embedder.model_dir / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    modules = json.loads((embedder.model_dir / "modules.json").read_text(encoding="utf-8"))
    meta = ExportMeta(
        source_id=embedder.id,
        dimension=embedder.dimension,
        max_seq_length=embedder.max_seq_length,
        pooling=_pooling(embedder.model_dir, modules) or "mean",
        input_names=accepted,
    )
    (folder / EXPORT_META_FILE).write_text(meta.to_json(), encoding="utf-8")
    return meta


def _check_against_torch(
    embedder: SentenceTransformerEmbedder, folder: Path, meta: ExportMeta
) -> None:
    onnx = OnnxEmbedder(folder, FP32_FILE, embedder_id=meta.source_id).embed(list(_PROBES))
    torch = embedder.embed(list(_PROBES))
    gap = float(1.0 - np.min(np.sum(onnx * torch, axis=1)))
    if not gap <= MAX_FP32_COSINE_GAP:
        raise EmbedderError(
            f"the ONNX export of {embedder.model_dir} does not compute what torch computes"
            f' (cosine gap {gap:.2g}); set [retrieval] embedder_runtime = "torch"'
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs advice ("consider pre-processing") on the root logger, which would
    # print over a progress bar or the TUI: hold it back for the call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)


def _pooling(model_dir: Path, modules: list[dict[str, Any]]) -> str | None:
    """ "mean" or "cls" from the Pooling module's config; None for any other pooling."""
    paths = [str(m.get("path", "")) for m in modules if str(m.get("type", "")).endswith("Pooling")]
    if not paths:
        return None
    try:
        config = json.loads((model_dir / paths[0] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    chosen = [mode for mode, flag in config.items() if flag is True and mode.startswith("pooling_")]
    if chosen == ["pooling_mode_mean_tokens"]:
        return "mean"
    if chosen == ["pooling_mode_cls_token"]:
        return "cls"
    return None
