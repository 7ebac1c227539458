"""The ingest benchmark: its report, its windows, and a real run on a small PDF.

The full run on the 234-page PDF takes about a minute (`longread bench ingest`); here a
few pages keep it to seconds, with the real embedder on torch and ONNX, so every stage and
every row of the side-by-side runs for real. Speed goals are printed, never asserted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import main
from engine.bench.ingest import EmbeddingRate, IngestBenchmark, run_ingest_benchmark, sample_windows
from engine.config import RetrievalSettings
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder
from tests.pdf_factory import make_pdf, write_pdf

_SENTENCE = (
    "Elizabeth walked three miles across the muddy fields to Netherfield, and arrived with"
    " her stockings dirty and her face glowing with the warmth of exercise."
)


def _rate(name: str, seconds: float, mean: float) -> EmbeddingRate:
    return EmbeddingRate(
        name=name,
        embedder_id=f"model+{name}",
        load_seconds=0.1,
        seconds=seconds,
        windows=300,
        chunks=60,
        mean_cosine=mean,
        min_cosine=mean - 0.01,
    )


def _benchmark(add_seconds: float) -> IngestBenchmark:
    return IngestBenchmark(
        path=Path("book.pdf"),
        pages=200,
        chunks=400,
        embedder_id="model+onnx-int8",
        bare_read_seconds=4.0,
        read_seconds=5.0,
        chunk_seconds=0.5,
        save_seconds=0.5,
        embed_seconds=add_seconds - 6.5,
        add_seconds=add_seconds,
        torch_load_seconds=4.0,
        export_seconds=6.0,
        rates=(
            _rate("torch fp32", 6.0, 1.0),
            _rate("onnx fp32", 4.0, 0.99999),
            _rate("onnx int8", 2.0, 0.992),
        ),
    )


def test_report_shows_every_stage_the_export_the_ratio_and_the_goal() -> None:
    report = _benchmark(add_seconds=16.0).report()
    for pattern in (
        r"book\.pdf \(200 pages, 400 chunks\), best of 1",
        r"embedder of the add: model\+onnx-int8",
        r"one-time ONNX export \(first add only, not counted below\): 6\.00 s, 10\.00 s",
        r"bare pypdf reading +50\.0 pages/s +\(4\.00 s\)",
        r"reading +40\.0 pages/s",
        r"chunking +800\.0 chunks/s",
        r"saving +800\.0 chunks/s",
        r"total pipeline +33\.3 pages/s +\(6\.00 s\)",
        r"embedding \+ index +42\.1 chunks/s +\(9\.50 s\)",
        r"whole add +12\.5 pages/s +\(16\.00 s\)",
        r"the stages \+ 0\.50 s of settings",
        r"pipeline / bare reading: 0\.67 \(goal: at least 0\.5\)",
        r"goal: whole add at most 20 s: met \(16\.00 s\)",
        r"the same 300 windows of the first 60 chunks",
        r"torch fp32 +50\.0 windows/s +10\.0 chunks/s .* mean 1\.0000 min 0\.9900",
        r"onnx fp32 +75\.0 windows/s",
        r"onnx int8 +150\.0 windows/s +30\.0 chunks/s .* mean 0\.9920 min 0\.9820",
    ):
        assert re.search(pattern, report), f"{pattern!r} not in:\n{report}"


def test_report_says_when_the_goal_is_not_met() -> None:
    result = _benchmark(add_seconds=20.5)
    assert not result.meets_goal
    assert "goal: whole add at most 20 s: not met (20.50 s)" in result.report()
    assert _benchmark(add_seconds=20.0).meets_goal  # "at most": the bound itself counts


def test_sample_windows_are_the_windows_the_index_build_embeds() -> None:
    texts = [" ".join(f"word{n}" for n in range(count)) for count in (5, 40, 90)]
    building = FakeEmbedder(max_tokens=16)
    ChunkEncoder(building).encode(texts)
    windows = sample_windows(texts, FakeEmbedder(max_tokens=16))
    assert windows == building.embedded
    assert len(windows) > len(texts)  # long texts were cut into several windows


def test_bench_ingest_refuses_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main.cli, ["bench", "ingest", str(tmp_path / "absent.pdf")])
    assert result.exit_code == 1
    assert "not found" in result.output


@pytest.mark.embedder
@pytest.mark.slow
def test_benchmark_times_every_stage_and_races_three_runtimes(tmp_path: Path) -> None:
    lines_per_page = 30
    pages = ["\n".join([_SENTENCE] * lines_per_page) + f"\nPage {n}." for n in range(6)]
    pdf = tmp_path / "small.pdf"
    write_pdf(pdf, make_pdf(pages))
    messages: list[str] = []

    result = run_ingest_benchmark(pdf, sample_chunks=3, progress=messages.append)

    assert any("exporting" in m for m in messages)
    assert result.pages == 6 and result.chunks > 3
    # The add ran the default runtime: fp32 ONNX, which keeps torch's id (the same vectors).
    assert RetrievalSettings().embedder_runtime == "onnx"
    assert result.embedder_id == result.rate("torch fp32").embedder_id
    stages = (result.read_seconds, result.chunk_seconds, result.save_seconds)
    assert all(seconds > 0 for seconds in (*stages, result.embed_seconds, result.bare_read_seconds))
    assert result.add_seconds >= sum(stages) + result.embed_seconds
    assert result.export_seconds is not None and result.export_seconds > 0
    assert result.torch_load_seconds > 0

    assert [rate.name for rate in result.rates] == ["torch fp32", "onnx fp32", "onnx int8"]
    assert len({rate.windows for rate in result.rates}) == 1  # the same windows for all
    for rate in result.rates:
        assert rate.chunks == 3 and rate.windows >= 3
        assert rate.seconds > 0 and rate.windows_per_second > 0 and rate.chunks_per_second > 0
        assert rate.min_cosine <= rate.mean_cosine <= 1.0 + 1e-5
    assert result.rate("torch fp32").min_cosine == pytest.approx(1.0, abs=1e-5)
    assert result.rate("onnx fp32").mean_cosine > 0.999
    assert result.rate("onnx fp32").embedder_id == result.rate("torch fp32").embedder_id
    assert result.rate("onnx int8").mean_cosine > 0.9
    assert result.rate("onnx int8").embedder_id.endswith("+onnx-int8")

    report = result.report()
    for pattern in (
        r"small\.pdf \(6 pages, \d+ chunks\)",
        r"one-time ONNX export \(first add only, not counted below\): \d+\.\d\d s",
        r"reading +\d+\.\d pages/s",
        r"chunking +\d+\.\d chunks/s",
        r"saving +\d+\.\d chunks/s",
        r"embedding \+ index +\d+\.\d chunks/s",
        r"whole add +\d+\.\d pages/s",
        r"pipeline / bare reading: \d+\.\d\d",
        r"goal: whole add at most 20 s: (met|not met)",
        r"torch fp32 +\d+\.\d windows/s +\d+\.\d chunks/s",
        r"onnx fp32 +\d+\.\d windows/s",
        r"onnx int8 +\d+\.\d windows/s",
    ):
        assert re.search(pattern, report), f"{pattern!r} not in:\n{report}"
