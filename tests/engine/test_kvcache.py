"""The saved-KV-state store, without a model: keys, checks, corruption, LRU eviction.

The payload writer stands in for llama.cpp's `llama_state_seq_save_file`; the real-model
round trips (another process, corrupt file rebuilt) are in test_llamacpp.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.kvcache import (
    FORMAT_VERSION,
    ORPHAN_GRACE_SECONDS,
    KVStateStore,
    StateKey,
    token_digest,
)
from engine.types import (
    ContextPlan,
    KVCacheType,
    RopeMethod,
)
from tests.model_fixtures import hand_plan


def make_plan(**changes: Any) -> ContextPlan:
    return hand_plan(**{"tokens_needed": 1000, "prefill_seconds": 1.0, "reason": "fits"} | changes)


def make_key(
    document_id: str = "doc-a", tokens: list[int] | None = None, **plan: object
) -> StateKey:
    return StateKey.build(
        model_sha256="ab" * 32,
        runtime="llama-cpp-python 0.0.test",
        plan=make_plan(**plan),
        document_id=document_id,
        tokens=tokens if tokens is not None else [1, 2, 3, 4],
    )


def writer(size: int, fill: bytes = b"k") -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes((fill * size)[:size])

    return write


@pytest.fixture
def store(tmp_path: Path) -> KVStateStore:
    return KVStateStore(tmp_path / "kvcache", max_bytes=10 * 2**20)


# -- keys ---------------------------------------------------------------------------------


def test_token_digest_is_order_and_value_sensitive() -> None:
    assert token_digest([1, 2, 3]) == token_digest([1, 2, 3])
    assert token_digest([1, 2, 3]) != token_digest([3, 2, 1])
    assert token_digest([1, 2, 3]) != token_digest([1, 2, 3, 0])


@pytest.mark.parametrize(
    "change",
    [
        {"n_ctx": 4096},
        {"kv_type": KVCacheType.Q8_0},
        {"flash_attn": True},
        {"rope_method": RopeMethod.YARN, "rope_freq_scale": 0.5, "yarn_orig_ctx": 8192},
        {"rope_method": RopeMethod.NTK, "rope_freq_base": 250000.0},
    ],
)
def test_every_plan_field_that_shapes_the_kv_changes_the_key(change: dict[str, Any]) -> None:
    assert make_key(**change).digest != make_key().digest


def test_fields_llama_cpp_never_sees_do_not_change_the_key() -> None:
    moved = make_key(tokens_needed=5, prefill_seconds=9.0, reason="other", gpu_layers=0)
    assert moved.digest == make_key().digest


def test_document_model_runtime_and_tokens_change_the_key() -> None:
    base = make_key()
    assert make_key(document_id="doc-b").digest != base.digest
    assert make_key(tokens=[1, 2, 3, 5]).digest != base.digest
    assert replace(base, model_sha256="cd" * 32).digest != base.digest
    assert replace(base, runtime="llama-cpp-python 9").digest != base.digest


def test_key_round_trips_through_json_and_rejects_wrong_shapes() -> None:
    key = make_key()
    assert StateKey.from_json(json.loads(json.dumps(key.to_json()))) == key
    with pytest.raises(ValueError):
        StateKey.from_json({"model_sha256": "x"})
    with pytest.raises(ValueError):
        StateKey.from_json({**key.to_json(), "n_ctx": "2048"})
    with pytest.raises(ValueError):
        StateKey.from_json([1, 2])


def test_summary_names_what_shaped_the_state() -> None:
    summary = make_key(kv_type=KVCacheType.Q8_0, flash_attn=True).summary()
    assert "n_ctx 2048" in summary and "q8_0" in summary and "flash-attn" in summary


# -- save and lookup ----------------------------------------------------------------------


def test_save_then_lookup_returns_the_verified_entry(store: KVStateStore) -> None:
    key = make_key()
    saved = store.save(key, writer(1000))
    assert saved is not None
    found = store.lookup(key)
    assert found is not None
    assert found.key == key and found.payload_bytes == 1000 and found.tokens == 4
    assert found.payload_path.read_bytes() == b"k" * 1000
    manifest = json.loads(store.root.joinpath(f"{key.digest}.json").read_text())
    assert manifest["format"] == FORMAT_VERSION
    assert manifest["payload_bytes"] == 1000
    assert len(manifest["payload_sha256"]) == 64


def test_lookup_of_an_unknown_key_is_a_plain_miss(store: KVStateStore) -> None:
    assert store.lookup(make_key()) is None
    assert store.last_miss_reason == "no saved state"


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [(_corrupt_flip, "checksum"), (_corrupt_truncate, "bytes")],
    ids=["flipped-byte", "truncated"],
)
def test_a_corrupt_payload_is_detected_and_deleted(
    store: KVStateStore, corrupt: Callable[[Path], None], reason: str
) -> None:
    key = make_key()
    entry = store.save(key, writer(5000))
    assert entry is not None
    corrupt(entry.payload_path)
    assert store.lookup(key) is None
    assert store.last_miss_reason is not None and reason in store.last_miss_reason
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    "manifest",
    [
        "not json at all",
        json.dumps([1, 2, 3]),
        json.dumps({"format": FORMAT_VERSION + 1}),
    ],
    ids=["garbage", "not-an-object", "newer-format"],
)
def test_an_unusable_manifest_is_a_miss_and_is_deleted(store: KVStateStore, manifest: str) -> None:
    key = make_key()
    entry = store.save(key, writer(100))
    assert entry is not None
    store.root.joinpath(f"{key.digest}.json").write_text(manifest)
    assert store.lookup(key) is None
    assert store.last_miss_reason is not None and "manifest" in store.last_miss_reason
    assert list(store.root.iterdir()) == []


def test_a_manifest_recording_another_key_is_not_trusted(store: KVStateStore) -> None:
    key = make_key()
    store.save(key, writer(100))
    path = store.root.joinpath(f"{key.digest}.json")
    manifest = json.loads(path.read_text())
    manifest["key"]["document_id"] = "someone-else"
    path.write_text(json.dumps(manifest))
    assert store.lookup(key) is None
    assert not path.exists()


def test_a_missing_payload_is_a_miss(store: KVStateStore) -> None:
    key = make_key()
    entry = store.save(key, writer(100))
    assert entry is not None
    entry.payload_path.unlink()
    assert store.lookup(key) is None
    assert not store.root.joinpath(f"{key.digest}.json").exists()


def test_a_failing_writer_keeps_nothing(store: KVStateStore) -> None:
    def fail(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("disk full")

    assert store.save(make_key(), fail) is None
    assert list(store.root.iterdir()) == []


def test_an_empty_payload_is_not_kept(store: KVStateStore) -> None:
    assert store.save(make_key(), writer(0)) is None
    assert list(store.root.iterdir()) == []


def test_saving_the_same_key_again_replaces_it(store: KVStateStore) -> None:
    key = make_key()
    store.save(key, writer(100, b"a"))
    store.save(key, writer(200, b"b"))
    found = store.lookup(key)
    assert found is not None and found.payload_path.read_bytes() == b"b" * 200
    assert len(store.entries()) == 1


# -- size cap and LRU ---------------------------------------------------------------------


def _age(store: KVStateStore, key: StateKey, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    os.utime(store.root / f"{key.digest}.json", (stamp, stamp))


def test_least_recently_used_entries_are_evicted_to_fit_the_cap(tmp_path: Path) -> None:
    store = KVStateStore(tmp_path / "kv", max_bytes=40_000)
    keys = [make_key(document_id=f"doc-{n}") for n in range(3)]
    for key in keys:
        assert store.save(key, writer(8_000)) is not None
    _age(store, keys[0], 300)
    _age(store, keys[1], 200)
    _age(store, keys[2], 100)
    assert store.lookup(keys[0]) is not None  # used now: keys[1] becomes the oldest

    newcomer = make_key(document_id="doc-new")
    assert store.save(newcomer, writer(8_000)) is not None
    left = {entry.document_id for entry in store.entries()}
    assert left == {"doc-0", "doc-2", "doc-new"}
    assert store.total_bytes() <= store.max_bytes


def test_a_state_larger_than_the_cap_is_not_kept_and_evicts_nothing(tmp_path: Path) -> None:
    store = KVStateStore(tmp_path / "kv", max_bytes=20_000)
    small = make_key(document_id="small")
    store.save(small, writer(5_000))
    assert store.save(make_key(document_id="huge"), writer(50_000)) is None
    assert [entry.document_id for entry in store.entries()] == ["small"]


def test_entries_are_listed_most_recent_first(store: KVStateStore) -> None:
    old, new = make_key(document_id="old"), make_key(document_id="new")
    store.save(old, writer(100))
    store.save(new, writer(300))
    _age(store, old, 500)
    entries = store.entries()
    assert [entry.document_id for entry in entries] == ["new", "old"]
    assert entries[0].payload_bytes == 300 and entries[0].tokens == 4


def test_clear_one_document_or_everything_reports_bytes_freed(store: KVStateStore) -> None:
    store.save(make_key(document_id="a"), writer(1000))
    store.save(make_key(document_id="a", tokens=[9, 9]), writer(1000))
    store.save(make_key(document_id="b"), writer(1000))
    freed = store.clear("a")
    assert freed >= 2000
    assert [entry.document_id for entry in store.entries()] == ["b"]
    assert store.clear() >= 1000
    assert store.entries() == []
    assert store.clear() == 0


def test_stale_orphans_are_swept_and_fresh_ones_spared(store: KVStateStore) -> None:
    store.root.mkdir(parents=True)
    stale = store.root / f"{'e' * 64}.kvstate"
    fresh = store.root / f"{'f' * 64}.123.abc.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - ORPHAN_GRACE_SECONDS - 10
    os.utime(stale, (old, old))
    assert store.entries() == []
    assert not stale.exists()
    assert fresh.exists()


def test_an_absent_store_folder_is_empty() -> None:
    store = KVStateStore(Path("/nonexistent/longread/kvcache"))
    assert store.entries() == []
    assert store.total_bytes() == 0
    assert store.clear() == 0
    assert store.lookup(make_key()) is None


def test_under_places_the_store_in_the_data_dir(tmp_path: Path) -> None:
    assert KVStateStore.under(tmp_path).root == tmp_path / "kvcache"
    with pytest.raises(ValueError):
        KVStateStore(tmp_path, max_bytes=-1)
