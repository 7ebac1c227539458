"""The GGUF reader: the bundled model's real header, synthetic files with known values, damage."""

from __future__ import annotations

import contextlib
import math
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.catalog import bundled_model_path
from models.errors import CorruptModelError, ModelError, ModelNotFoundError, UnsupportedModelError
from models.gguf import ArraySummary, ValueType, read_metadata, read_profile
from models.types import SizeClass
from tests.gguf_factory import (
    F16,
    GARBAGE,
    TINY_PARAMETERS,
    TINY_TENSORS,
    VT,
    Tensor,
    Typed,
    gemma3_sliding,
    gguf_bytes,
    llama_metadata,
    per_layer_heads,
    rope_freqs_llama,
    truncated,
    write_gguf,
    yarn_llama,
)


@pytest.fixture(scope="module")
def bundled() -> Path:
    return bundled_model_path()


# --- the real bundled model ---------------------------------------------------------------


def test_bundled_model_profile(bundled: Path) -> None:
    profile = read_profile(bundled, sha256="abc")
    assert profile.path == bundled
    assert profile.architecture == "llama"
    assert profile.context_length == 8192
    assert profile.embedding_length == 576
    assert profile.layer_count == 30
    assert (profile.head_count, profile.kv_head_count) == (9, 3)
    assert profile.head_dim == profile.key_length == profile.value_length == 64
    assert profile.rope_freq_base == 100000.0
    assert profile.rope_scaling_type is None
    assert not profile.has_rope_freqs
    assert not profile.baked_long_context
    assert profile.sliding_window is None
    assert profile.file_type == "Q4_1"
    assert profile.parameter_count is not None
    assert 100_000_000 <= profile.parameter_count <= 170_000_000
    assert profile.size_class is SizeClass.TINY
    assert profile.has_chat_template
    assert profile.file_size == bundled.stat().st_size
    assert profile.sha256 == "abc"
    assert profile.name


def test_bundled_vocabulary_is_summarized_unless_asked(bundled: Path) -> None:
    meta = read_metadata(bundled)
    assert meta.version == 3
    assert meta.tensor_count == 272
    assert meta.metadata["tokenizer.ggml.tokens"] == ArraySummary(ValueType.STRING, 49152)
    assert meta.metadata["tokenizer.ggml.merges"] == ArraySummary(ValueType.STRING, 48900)
    assert meta.metadata["general.languages"] == ("en",)  # a short array is read

    full = read_metadata(bundled, full_arrays={"tokenizer.ggml.tokens"})
    tokens = full.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, tuple)
    assert len(tokens) == 49152
    assert all(isinstance(token, str) for token in tokens)
    assert isinstance(full.metadata["tokenizer.ggml.merges"], ArraySummary)


def test_bundled_tensor_data_ends_exactly_at_the_end_of_the_file(bundled: Path) -> None:
    # Checks the block-size table against real Q4_1, Q8_0 and F32 tensors.
    meta = read_metadata(bundled)
    ends = [meta.data_offset + t.offset + (t.byte_size or 0) for t in meta.tensors]
    assert max(ends) == meta.file_size
    assert {t.type_name for t in meta.tensors} == {"Q4_1", "Q8_0", "F32"}


@pytest.mark.model
def test_metadata_agrees_with_llama_cpp(bundled: Path) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(bundled), vocab_only=True, verbose=False)
    theirs: dict[str, str] = llm.metadata
    ours = read_metadata(bundled).metadata
    # llama.cpp leaves arrays out of its string map.
    scalar_keys = {k for k, v in ours.items() if not isinstance(v, tuple | ArraySummary)}
    assert set(theirs) == scalar_keys
    for key in scalar_keys:
        value = ours[key]
        if isinstance(value, bool):
            assert theirs[key] == str(value).lower(), key
        elif isinstance(value, float):
            assert math.isclose(float(theirs[key]), value, rel_tol=1e-5, abs_tol=1e-6), key
        else:
            assert theirs[key] == str(value), key


# --- synthetic files with known values ----------------------------------------------------


def test_plain_llama_profile(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "plain.gguf", gguf_bytes(llama_metadata()))
    profile = read_profile(path, sha256="s")
    assert profile.name == "Synthetic Llama"
    assert profile.architecture == "llama"
    assert profile.context_length == 4096
    assert (profile.layer_count, profile.head_count, profile.kv_head_count) == (4, 8, 2)
    assert profile.key_length == profile.value_length == 256 // 8
    assert profile.rope_freq_base == 500000.0
    assert profile.file_type == "Q4_K_M"
    assert profile.parameter_count == TINY_PARAMETERS
    assert profile.has_chat_template
    assert not profile.baked_long_context
    assert profile.file_size == path.stat().st_size


def test_yarn_scaling_is_read(tmp_path: Path) -> None:
    profile = read_profile(write_gguf(tmp_path / "yarn.gguf", yarn_llama()), sha256="")
    assert profile.context_length == 131072
    assert profile.rope_scaling_type == "yarn"
    assert profile.rope_scaling_factor == 4.0
    assert profile.rope_original_context == 32768
    assert profile.baked_long_context


def test_rope_freqs_tensor_marks_baked_long_context(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "llama31.gguf", rope_freqs_llama())
    assert read_metadata(path).has_rope_freqs
    profile = read_profile(path, sha256="")
    assert profile.has_rope_freqs
    assert profile.rope_scaling_type is None
    assert profile.baked_long_context


def test_gemma3_sliding_window_and_head_dims(tmp_path: Path) -> None:
    profile = read_profile(write_gguf(tmp_path / "gemma.gguf", gemma3_sliding()), sha256="")
    assert profile.architecture == "gemma3"
    assert profile.sliding_window == 512
    assert (profile.head_count, profile.kv_head_count) == (4, 1)
    assert profile.key_length == profile.value_length == 256  # not 640 // 4
    assert profile.rope_freq_base == 1000000.0
    assert profile.file_type == "F16"
    assert not profile.has_chat_template


def test_per_layer_head_counts_take_the_largest_layer(tmp_path: Path) -> None:
    profile = read_profile(write_gguf(tmp_path / "elm.gguf", per_layer_heads()), sha256="")
    assert (profile.head_count, profile.kv_head_count) == (20, 5)
    assert profile.key_length == 64


def test_defaults_for_absent_keys(tmp_path: Path) -> None:
    drop = {
        "general.name",
        "general.file_type",
        "llama.attention.head_count_kv",
        "llama.rope.freq_base",
        "tokenizer.chat_template",
    }
    path = write_gguf(tmp_path / "bare-model.gguf", gguf_bytes(llama_metadata(drop=drop)))
    profile = read_profile(path, sha256="")
    assert profile.name == "bare-model"
    assert profile.kv_head_count == profile.head_count == 8
    assert profile.rope_freq_base == 10000.0
    assert profile.sliding_window is None
    assert not profile.has_chat_template
    # Without general.file_type the type holding most matrix weights names the file.
    assert profile.file_type == "Q4_1"


@pytest.mark.parametrize(
    ("ftype", "name"),
    [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (7, "Q8_0"),
        (18, "Q6_K"),
        (32, "BF16"),
        (999, "ftype 999"),
    ],
)
def test_file_type_names(tmp_path: Path, ftype: int, name: str) -> None:
    data = gguf_bytes(llama_metadata({"general.file_type": ftype}))
    assert read_profile(write_gguf(tmp_path / "m.gguf", data), sha256="").file_type == name


def test_legacy_linear_scale_and_zero_sliding_window(tmp_path: Path) -> None:
    metadata = llama_metadata({"llama.rope.scale_linear": 2.0, "llama.attention.sliding_window": 0})
    profile = read_profile(write_gguf(tmp_path / "old.gguf", gguf_bytes(metadata)), sha256="")
    assert (profile.rope_scaling_type, profile.rope_scaling_factor) == ("linear", 2.0)
    assert profile.sliding_window is None


@pytest.mark.parametrize("version", [2, 3])
def test_every_value_type_round_trips(tmp_path: Path, version: int) -> None:
    metadata = {
        "u8": Typed(VT.UINT8, 255),
        "i8": Typed(VT.INT8, -128),
        "u16": Typed(VT.UINT16, 65535),
        "i16": Typed(VT.INT16, -32768),
        "u32": Typed(VT.UINT32, 2**32 - 1),
        "i32": Typed(VT.INT32, -(2**31)),
        "f32": Typed(VT.FLOAT32, 0.5),
        "yes": True,
        "no": False,
        "text": "héllo, wörld",
        "empty": "",
        "u64": Typed(VT.UINT64, 2**64 - 1),
        "i64": Typed(VT.INT64, -(2**63)),
        "f64": Typed(VT.FLOAT64, 1e300),
        "floats": Typed(VT.ARRAY, [1.5, -2.5], VT.FLOAT64),
        "flags": [True, False, True],
        "names": ["a", "bb", ""],
        "nested": [[1, 2], ["x"], []],
        "none": Typed(VT.ARRAY, [], VT.STRING),
    }
    path = write_gguf(tmp_path / "types.gguf", gguf_bytes(metadata, version=version))
    meta = read_metadata(path)
    assert meta.version == version
    assert dict(meta.metadata) == {
        "u8": 255,
        "i8": -128,
        "u16": 65535,
        "i16": -32768,
        "u32": 2**32 - 1,
        "i32": -(2**31),
        "f32": 0.5,
        "yes": True,
        "no": False,
        "text": "héllo, wörld",
        "empty": "",
        "u64": 2**64 - 1,
        "i64": -(2**63),
        "f64": 1e300,
        "floats": (1.5, -2.5),
        "flags": (True, False, True),
        "names": ("a", "bb", ""),
        "nested": ((1, 2), ("x",), ()),
        "none": (),
    }
    assert meta.parameter_count == TINY_PARAMETERS
    assert [t.name for t in meta.tensors] == [t.name for t in TINY_TENSORS]
    assert meta.tensors[1].shape == (16, 16)
    assert meta.tensors[1].ggml_type == F16


def test_long_arrays_are_summarized_at_every_kind(tmp_path: Path) -> None:
    metadata = {
        "strings": [f"token{i}" for i in range(40)],
        "numbers": Typed(VT.ARRAY, list(range(40)), VT.INT32),
        "nested": [[i, i] for i in range(40)],
        "after": "still read",
    }
    path = write_gguf(tmp_path / "arrays.gguf", gguf_bytes(metadata))
    meta = read_metadata(path, array_limit=10)
    assert meta.metadata["strings"] == ArraySummary(ValueType.STRING, 40)
    assert meta.metadata["numbers"] == ArraySummary(ValueType.INT32, 40)
    assert meta.metadata["nested"] == ArraySummary(ValueType.ARRAY, 40)
    assert meta.metadata["after"] == "still read"
    everything = read_metadata(path, array_limit=None).metadata
    assert everything["numbers"] == tuple(range(40))
    assert everything["nested"] == tuple((i, i) for i in range(40))


def test_custom_alignment(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "a.gguf", gguf_bytes(llama_metadata(), alignment=64))
    meta = read_metadata(path)
    assert meta.alignment == 64
    assert meta.data_offset % 64 == 0


# --- missing, damaged and unsupported files -----------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelNotFoundError, match=r"nowhere\.gguf does not exist"):
        read_metadata(path)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a folder"):
        read_metadata(tmp_path)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", "the file is empty"),
        (b"GG", "does not start with the GGUF magic"),
        (GARBAGE, "does not start with the GGUF magic"),
        (b"<!DOCTYPE html><html>Not found</html>", "does not start with the GGUF magic"),
        (b"GGUF" + struct.pack("<I", 99), "unknown GGUF version 99"),
    ],
)
def test_not_gguf(tmp_path: Path, data: bytes, cause: str) -> None:
    path = write_gguf(tmp_path / "bad.gguf", data)
    with pytest.raises(CorruptModelError, match=cause) as caught:
        read_metadata(path)
    assert str(caught.value).startswith(f"{path} is not a valid GGUF file: ")


def test_every_truncation_is_a_corrupt_model_error(tmp_path: Path) -> None:
    data = gguf_bytes(llama_metadata())
    path = tmp_path / "cut.gguf"
    for keep in range(1, len(data)):
        write_gguf(path, truncated(data, keep))
        with pytest.raises(CorruptModelError, match="is not a valid GGUF file") as caught:
            read_metadata(path)
        assert str(path) in str(caught.value)


def test_missing_tensor_data_reads_as_an_incomplete_download(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "half.gguf", gguf_bytes(llama_metadata(), with_data=False))
    with pytest.raises(CorruptModelError, match=r"cut short.*incomplete download"):
        read_metadata(path)


def test_huge_claimed_counts_fail_fast(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 2**60)
    path = write_gguf(tmp_path / "huge.gguf", data)
    with pytest.raises(CorruptModelError, match="claims 1152921504606846976 metadata entries"):
        read_metadata(path)


def test_unknown_value_type_and_duplicate_key(tmp_path: Path) -> None:
    bad_type = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
    bad_type += struct.pack("<I", 42) + bytes(16)
    with pytest.raises(CorruptModelError, match="unknown value type 42"):
        read_metadata(write_gguf(tmp_path / "t.gguf", bad_type))
    entry = struct.pack("<Q", 1) + b"k" + struct.pack("<II", VT.UINT32, 7)
    twice = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + entry + entry
    with pytest.raises(CorruptModelError, match="appears twice"):
        read_metadata(write_gguf(tmp_path / "d.gguf", twice))


def test_deeply_nested_arrays_are_refused(tmp_path: Path) -> None:
    nesting = struct.pack("<IQ", VT.ARRAY, 1) * 100_000 + struct.pack("<IQ", VT.UINT8, 0)
    entry = struct.pack("<Q", 4) + b"deep" + struct.pack("<I", VT.ARRAY) + nesting
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry
    for limit in (None, 0):  # read, and stepped over
        with pytest.raises(CorruptModelError, match="nests arrays more than 8 deep"):
            read_metadata(write_gguf(tmp_path / "deep.gguf", data), array_limit=limit)


def test_too_many_dimensions(tmp_path: Path) -> None:
    data = gguf_bytes({}, [Tensor("t", (1, 1, 1, 1, 1))])
    with pytest.raises(CorruptModelError, match="5 dimensions"):
        read_metadata(write_gguf(tmp_path / "dims.gguf", data))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
        (b"tjgg" + bytes(64), "old GGJT-format"),
    ],
)
def test_unsupported_variants(tmp_path: Path, data: bytes, match: str) -> None:
    path = write_gguf(tmp_path / "old.gguf", data)
    with pytest.raises(UnsupportedModelError, match=match) as caught:
        read_metadata(path)
    assert str(path) in str(caught.value)


def test_a_file_without_architecture_has_no_profile(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "vocab.gguf", gguf_bytes({"tokenizer.ggml.model": "gpt2"}, ()))
    assert read_metadata(path).tensor_count == 0
    with pytest.raises(UnsupportedModelError, match=r"no general\.architecture"):
        read_profile(path, sha256="")


def test_a_model_without_context_length_is_unsupported(tmp_path: Path) -> None:
    data = gguf_bytes(llama_metadata(drop={"llama.context_length"}))
    with pytest.raises(UnsupportedModelError, match=r"no usable llama\.context_length"):
        read_profile(write_gguf(tmp_path / "m.gguf", data), sha256="")


_VALID = gguf_bytes(llama_metadata())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(0, len(_VALID) - 1), byte=st.integers(0, 255))
def test_a_damaged_byte_never_escapes_as_a_bug(tmp_path: Path, position: int, byte: int) -> None:
    damaged = bytearray(_VALID)
    damaged[position] = byte
    path = write_gguf(tmp_path / "fuzz.gguf", bytes(damaged))
    # Refusing with a message is fine; any other exception is a reader bug.
    with contextlib.suppress(ModelError):
        read_metadata(path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tail=st.binary(max_size=200))
def test_random_bytes_after_a_valid_preamble(tmp_path: Path, tail: bytes) -> None:
    path = write_gguf(tmp_path / "noise.gguf", b"GGUF" + struct.pack("<I", 3) + tail)
    with contextlib.suppress(ModelError):
        read_metadata(path)
