"""The IDX reader and writer: round trips, damaged files, and a fuzz test."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.core.data.idx import (
    IDX_DTYPES,
    decode_idx,
    decode_idx_file_bytes,
    encode_idx,
    gunzip,
    gzip_bytes,
    read_idx,
    write_idx,
)
from rnnlab.core.errors import UserError

torch.set_num_threads(1)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_round_trip_uint8_images(tmp_path, name):
    images = _images()
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    np.testing.assert_array_equal(back, images)
    assert back.flags.writeable  # torch.from_numpy needs a writable array


def test_gz_suffix_decides_compression(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels.gz", labels)
    write_idx(tmp_path / "labels", labels)
    assert (tmp_path / "labels.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "labels").read_bytes()[:4] == b"\x00\x00\x08\x01"


@pytest.mark.parametrize("code", sorted(IDX_DTYPES))
def test_round_trip_every_dtype(code):
    dtype = IDX_DTYPES[code].newbyteorder("=")
    array = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    data = encode_idx(array)
    assert data[2] == code and data[3] == 3
    back = decode_idx(data)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)


def test_header_layout_matches_mnist():
    data = encode_idx(np.zeros((60000, 28, 28), dtype=np.uint8)[:2])
    assert data[:16] == struct.pack(">IIII", 0x00000803, 2, 28, 28)


def test_write_is_reproducible(tmp_path):
    images = _images()
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_wrong_magic_is_refused(tmp_path):
    data = bytearray(encode_idx(_images(1)))
    data[0] = 0x12
    (tmp_path / "bad-idx").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"bad-idx: not an IDX file \(magic number 0x12000803"):
        read_idx(tmp_path / "bad-idx")


def test_unknown_dtype_is_refused():
    data = bytearray(encode_idx(_images(1)))
    data[2] = 0x0A
    with pytest.raises(UserError, match=r"unknown IDX dtype code 0x0a"):
        decode_idx(bytes(data), "x")


def test_zero_dimensions_are_refused():
    with pytest.raises(UserError, match=r"declares 0 dimensions"):
        decode_idx(b"\x00\x00\x08\x00\x01", "x")


def test_too_many_dimensions_are_refused():
    header = struct.pack(">HBB", 0, 0x08, 200) + struct.pack(">200I", *([1] * 200))
    with pytest.raises(UserError, match=r"declares 200 dimensions"):
        decode_idx(header + b"\x00", "x")


def test_empty_array_with_huge_other_dims_is_refused():
    # prod(dims) == 0 matches an empty payload, but no array can have this shape.
    header = struct.pack(">HBB4I", 0, 0x08, 4, 0, 8603, 32738017, 32748200)
    with pytest.raises(UserError, match=r"implausibly large"):
        decode_idx(header, "x")


def test_empty_array_is_fine():
    np.testing.assert_array_equal(
        decode_idx(encode_idx(np.zeros((0, 28, 28), np.uint8))).shape, (0, 28, 28)
    )


def test_truncated_file_names_the_file(tmp_path):
    data = encode_idx(_images(2))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data[:-1])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: IDX file is truncated"):
        read_idx(path)


def test_truncated_header_is_refused():
    with pytest.raises(UserError, match=r"header truncated"):
        decode_idx(encode_idx(_images(1))[:10], "x")
    with pytest.raises(UserError, match=r"too short"):
        decode_idx(b"\x00\x00", "x")


def test_oversized_file_is_refused():
    with pytest.raises(UserError, match=r"longer than its header says"):
        decode_idx(encode_idx(_images(1)) + b"\x00", "x")


def test_huge_dimension_claim_is_refused_without_allocating():
    header = struct.pack(">HBB4I", 0, 0x0E, 4, *(2**32 - 1,) * 4)  # 2**128 float64 values
    with pytest.raises(UserError, match=r"implausibly large"):
        decode_idx(header + b"\x00" * 64, "x")
    header = struct.pack(">HBB3I", 0, 0x08, 3, 60000, 28, 28)  # plausible, but 64 bytes follow
    with pytest.raises(UserError, match=r"truncated: header \(60000, 28, 28\) needs 47040000"):
        decode_idx(header + b"\x00" * 64, "x")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, _images(3))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz: damaged gzip data"):
        read_idx(path)


def test_plain_bytes_named_gz_are_refused():
    with pytest.raises(UserError, match=r"damaged gzip data"):
        decode_idx_file_bytes(encode_idx(_images(1)), "x.gz")


def test_gunzip_limit_stops_bombs():
    with pytest.raises(UserError, match=r"decompresses to more than 1000 bytes"):
        gunzip(gzip_bytes(b"\x00" * 5000), "bomb.gz", limit=1000)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match=r"file not found"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(UserError, match=r"cannot read"):
        read_idx(tmp_path)


def test_encode_refuses_unsupported_dtype():
    with pytest.raises(UserError, match=r"IDX cannot store dtype int64"):
        encode_idx(np.zeros(3, dtype=np.int64))


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_raise_only_user_error(data):
    for name in ("fuzz", "fuzz.gz"):
        try:
            array = decode_idx_file_bytes(data, name)
        except UserError:
            continue
        assert isinstance(array, np.ndarray)


@FUZZ
@given(
    code=st.sampled_from([*IDX_DTYPES, 0x00, 0x0A, 0xFF]),
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 4), min_size=0, max_size=40),
    payload=st.binary(max_size=200),
    cut=st.integers(0, 400),
    compress=st.booleans(),
)
def test_fuzz_plausible_headers(code, dims, payload, cut, compress):
    data = struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims) + payload
    if compress:
        data = gzip.compress(data)[:cut] if cut < 40 else gzip.compress(data)
    try:
        array = decode_idx_file_bytes(data, "fuzz.gz" if compress else "fuzz")
    except UserError:
        return
    assert array.shape == tuple(dims)


def test_oversized_plain_file_is_refused_before_reading(tmp_path, monkeypatch):
    from rnnlab.core.data import idx

    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 100)
    write_idx(tmp_path / "big", _images(1))
    with pytest.raises(UserError, match=r"big: larger than 100 bytes"):
        read_idx(tmp_path / "big")
