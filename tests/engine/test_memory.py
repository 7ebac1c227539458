"""Memory budgets: reading available RAM, the safety margins, and the VRAM seam."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine import memory
from engine.memory import (
    DEFAULT_AVAILABLE_BYTES,
    MemoryBudget,
    available_memory_bytes,
    detect_available_memory,
    memory_budget,
    parse_meminfo,
    ram_budget,
    vram_budget,
)
from engine.types import Backend

GiB = 2**30
MiB = 2**20

MEMINFO = """\
MemTotal:       32768000 kB
MemFree:         1000000 kB
MemAvailable:   20000000 kB
Buffers:          200000 kB
Cached:          9000000 kB
HugePages_Total:       0
"""

OLD_KERNEL_MEMINFO = """\
MemTotal:       32768000 kB
MemFree:         1000000 kB
Buffers:          200000 kB
Cached:          9000000 kB
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MEMINFO, 20_000_000 * 1024),
        (OLD_KERNEL_MEMINFO, (1_000_000 + 200_000 + 9_000_000) * 1024),
        ("", None),
        ("garbage\nMemTotal: lots\n", None),
    ],
)
def test_parse_meminfo(text: str, expected: int | None) -> None:
    assert parse_meminfo(text) == expected


def test_reads_the_meminfo_file(tmp_path: Path) -> None:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    assert available_memory_bytes(path) == 20_000_000 * 1024
    assert detect_available_memory(path) == (20_000_000 * 1024, str(path))


def test_falls_back_to_sysconf_then_a_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-meminfo"
    monkeypatch.setattr(memory, "_from_psutil", lambda: None)
    monkeypatch.setattr(memory, "_from_sysconf", lambda: 3 * GiB)
    assert detect_available_memory(missing) == (3 * GiB, "sysconf")
    monkeypatch.setattr(memory, "_from_sysconf", lambda: None)
    assert detect_available_memory(missing) == (DEFAULT_AVAILABLE_BYTES, "default")


def test_psutil_is_used_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeVirtualMemory:
        available = 5 * GiB

    class FakePsutil:
        @staticmethod
        def virtual_memory() -> FakeVirtualMemory:
            return FakeVirtualMemory()

    monkeypatch.setitem(sys.modules, "psutil", FakePsutil)
    assert detect_available_memory(tmp_path / "no-meminfo") == (5 * GiB, "psutil")


def test_this_machine_reports_some_memory() -> None:
    assert available_memory_bytes() > 0


@pytest.mark.parametrize(
    ("available", "margin", "budget"),
    [
        (16 * GiB, round(1.6 * GiB), 16 * GiB - round(1.6 * GiB)),  # a tenth
        (2 * GiB, 512 * MiB, 2 * GiB - 512 * MiB),  # at least 512 MiB
        (100 * MiB, 512 * MiB, 0),  # never negative
    ],
)
def test_ram_budget_keeps_a_margin(available: int, margin: int, budget: int) -> None:
    result = ram_budget(available)
    assert result == MemoryBudget(available, margin, "given")
    assert result.bytes == budget


def test_ram_budget_detects_when_not_given(tmp_path: Path) -> None:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    result = ram_budget(meminfo_path=path)
    assert result.available_bytes == 20_000_000 * 1024
    assert result.source == str(path)
    assert 0 < result.bytes < result.available_bytes


def test_vram_budget_keeps_a_margin_of_the_card() -> None:
    result = vram_budget(10 * GiB, 24 * GiB)
    assert result.margin_bytes == round(24 * GiB * 0.05)
    assert result.bytes == 10 * GiB - round(24 * GiB * 0.05)
    assert vram_budget(2 * GiB).margin_bytes == 512 * MiB
    assert vram_budget(0).bytes == 0
    with pytest.raises(ValueError):
        vram_budget(-1)


def test_memory_budget_per_backend(tmp_path: Path) -> None:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    assert memory_budget(Backend.CPU, meminfo_path=path).source == str(path)
    assert memory_budget(Backend.CUDA, 8 * GiB, 12 * GiB).source == "vram"
    assert memory_budget(Backend.METAL, meminfo_path=path).source == str(path)  # unified
    assert memory_budget(Backend.METAL, 8 * GiB).source == "vram"
    with pytest.raises(ValueError, match=r"engine/llamacpp/"):
        memory_budget(Backend.CUDA)
