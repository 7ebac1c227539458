"""Memory budgets for the context planner: how many bytes a plan may use.

On CPU the budget is the RAM available now (Linux: `MemAvailable` from /proc/meminfo, which
counts reclaimable page cache; elsewhere psutil when it happens to be installed, then
`os.sysconf`, then a conservative default) minus a safety margin for everything else the
process and the system keep allocating. On CUDA the budget is free VRAM minus a margin;
this module does not query the GPU: `engine/llamacpp/`, the only module that imports
llama_cpp, reports the free and total VRAM and passes the numbers to `vram_budget`. On
Metal, memory is unified, so without a VRAM figure the RAM budget stands in.

What it does not do: no GPU queries, no new dependencies (psutil is used only if present),
no caching: every call reads the numbers afresh, since free memory moves.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from engine.types import Backend

MEMINFO_PATH = Path("/proc/meminfo")

DEFAULT_AVAILABLE_BYTES = 2 * 2**30
"""When nothing can be read: a budget small enough to be safe on any machine that runs
longread at all, at the price of needless KV quantization on a big one."""

RAM_MARGIN_BYTES = 512 * 2**20
RAM_MARGIN_FRACTION = 0.10
"""RAM kept back: the larger of 512 MiB and a tenth of what is available (the TUI, the
embedder, the indexes and the rest of the desktop keep allocating while a prompt runs)."""

VRAM_MARGIN_BYTES = 512 * 2**20
VRAM_MARGIN_FRACTION = 0.05
"""VRAM kept back: the CUDA context and allocator fragmentation, which llama.cpp's own
figures do not include."""


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes available to a plan: what was free, less a safety margin.

    `source` says where the figure came from ("/proc/meminfo", "psutil", "sysconf",
    "default", "vram"), for `longread plan` to show.
    """

    available_bytes: int
    margin_bytes: int
    source: str

    @property
    def bytes(self) -> int:
        """The budget handed to `plan_context`: never negative."""
        return max(0, self.available_bytes - self.margin_bytes)


def parse_meminfo(text: str) -> int | None:
    """Available bytes from /proc/meminfo text: MemAvailable, else (kernels before 3.14)
    MemFree + Buffers + Cached; None if neither is there."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        # The kernel writes "kB" but means KiB.
        fields[name.strip()] = int(parts[0]) * (1024 if unit == "kb" else 1)
    if "MemAvailable" in fields:
        return fields["MemAvailable"]
    if "MemFree" in fields:
        return fields["MemFree"] + fields.get("Buffers", 0) + fields.get("Cached", 0)
    return None


def _from_meminfo(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return parse_meminfo(text)


def _from_psutil() -> int | None:
    try:
        psutil = importlib.import_module("psutil")  # optional: never a dependency
    except ImportError:
        return None
    available = getattr(psutil.virtual_memory(), "available", None)
    return int(available) if isinstance(available, int) else None


def _from_sysconf() -> int | None:
    # SC_AVPHYS_PAGES counts free pages only (no reclaimable cache): an underestimate,
    # which is the safe side. It is missing on macOS and Windows.
    names = getattr(os, "sysconf_names", {})
    if "SC_AVPHYS_PAGES" not in names or "SC_PAGE_SIZE" not in names:
        return None
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def detect_available_memory(meminfo_path: Path = MEMINFO_PATH) -> tuple[int, str]:
    """Available RAM in bytes and where the figure came from."""
    readers: list[tuple[str, Callable[[], int | None]]] = [
        (str(meminfo_path), partial(_from_meminfo, meminfo_path)),
        ("psutil", _from_psutil),
        ("sysconf", _from_sysconf),
    ]
    for source, reader in readers:
        value = reader()
        if value is not None and value > 0:
            return value, source
    return DEFAULT_AVAILABLE_BYTES, "default"


def available_memory_bytes(meminfo_path: Path = MEMINFO_PATH) -> int:
    """Available RAM in bytes (see `detect_available_memory` for the sources, in order)."""
    return detect_available_memory(meminfo_path)[0]


def ram_budget(
    available_bytes: int | None = None, meminfo_path: Path = MEMINFO_PATH
) -> MemoryBudget:
    """The CPU budget: available RAM (detected unless given) less the RAM margin."""
    if available_bytes is None:
        available_bytes, source = detect_available_memory(meminfo_path)
    else:
        source = "given"
    margin = max(RAM_MARGIN_BYTES, round(available_bytes * RAM_MARGIN_FRACTION))
    return MemoryBudget(available_bytes, margin, source)


def vram_budget(free_vram_bytes: int, total_vram_bytes: int | None = None) -> MemoryBudget:
    """The GPU budget from the figures `engine/llamacpp/` reports: free VRAM less a margin
    of the larger of 512 MiB and 5% of the card (of the free VRAM when the total is unknown)."""
    if free_vram_bytes < 0:
        raise ValueError(f"free VRAM cannot be negative: {free_vram_bytes}")
    basis = total_vram_bytes if total_vram_bytes else free_vram_bytes
    margin = max(VRAM_MARGIN_BYTES, round(basis * VRAM_MARGIN_FRACTION))
    return MemoryBudget(free_vram_bytes, margin, "vram")


def memory_budget(
    backend: Backend,
    free_vram_bytes: int | None = None,
    total_vram_bytes: int | None = None,
    meminfo_path: Path = MEMINFO_PATH,
) -> MemoryBudget:
    """The budget for `backend`: RAM on CPU, VRAM on CUDA (which must be given), VRAM on Metal
    when given, else RAM (unified memory)."""
    if backend is Backend.CPU:
        return ram_budget(meminfo_path=meminfo_path)
    if free_vram_bytes is not None:
        return vram_budget(free_vram_bytes, total_vram_bytes)
    if backend is Backend.METAL:
        return ram_budget(meminfo_path=meminfo_path)
    raise ValueError(
        "a CUDA budget needs the free VRAM, which engine/llamacpp/ reports from the backend"
    )


def planning_budget(
    backend: Backend,
    configured_mb: int,
    gpu_memory: Callable[[], tuple[int, int] | None],
) -> int:
    """Bytes a context plan may use: `configured_mb` when set, else free VRAM less a margin
    on a GPU backend (`gpu_memory` asks the backend), else the RAM budget."""
    if configured_mb:
        return configured_mb * 2**20
    vram = gpu_memory() if backend is not Backend.CPU else None
    if vram is None:
        # No VRAM figure: plan within RAM (unified memory on Metal; a safe floor on CUDA).
        return memory_budget(Backend.CPU).bytes
    return memory_budget(backend, *vram).bytes
