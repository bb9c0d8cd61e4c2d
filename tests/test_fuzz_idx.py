"""Fuzz the IDX reader with mutated valid files: it returns an array or raises UserError.

Never another exception, never a hang (hypothesis' deadline fails any example
slower than DEADLINE). tests/test_data_idx.py fuzzes random bytes and plausible
headers; here real files, raw and gzipped, are damaged the way disks and
downloads damage them (flipped bytes, cuts, insertions, edited header fields)
and read from disk with ``read_idx``.

The suite runs RNNLAB_FUZZ_EXAMPLES examples per test (default 300); for the
long run of the issue::

    RNNLAB_FUZZ_EXAMPLES=10000 pytest -q tests/test_fuzz_idx.py -p no:randomly
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.core.data.idx import IDX_DTYPES, decode_idx, encode_idx, gzip_bytes, read_idx
from rnnlab.core.errors import UserError

EXAMPLES = int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", "300"))
DEADLINE = timedelta(seconds=2)  # a valid file this small reads in well under a millisecond
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE, derandomize=EXAMPLES <= 300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@st.composite
def valid_arrays(draw) -> np.ndarray:
    """A small array of any IDX dtype: 1 to 3 dimensions of 0 to 6."""
    dtype = draw(st.sampled_from(list(IDX_DTYPES.values()))).newbyteorder("=")
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=3)))
    size = dtype.itemsize * int(np.prod(shape))
    values = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=dtype)
    return values.reshape(shape)


# A mutation: (kind, where as a fraction of the length, a byte or a count).
MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete", "dim"]),
                               st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                     min_size=1, max_size=6)


def mutate(data: bytes, mutations, header_dims: int) -> bytes:
    b = bytearray(data)
    for kind, where, value in mutations:
        i = int(where * len(b)) if b else 0
        if kind == "flip" and b:
            b[i] ^= 1 << (value % 8)
        elif kind == "set" and b:
            b[i] = value
        elif kind == "cut":
            del b[i:]
        elif kind == "insert":
            b[i:i] = bytes([value]) * (1 + value % 7)
        elif kind == "delete" and b:
            del b[i:i + 1 + value % 5]
        elif kind == "dim" and header_dims and len(b) >= 4 + 4 * header_dims:
            # rewrite one header dimension with an extreme or off-by-one value
            dim = value % header_dims
            old = struct.unpack_from(">I", b, 4 + 4 * dim)[0]
            new = [0, 1, min(old + 1, 2**32 - 1), max(old - 1, 0), 2**31, 2**32 - 1][value % 6]
            struct.pack_into(">I", b, 4 + 4 * dim, new)
    return bytes(b)


def read_or_user_error(path: Path):
    """read_idx's result, or None for a UserError; any other exception fails the test."""
    try:
        return read_idx(path)
    except UserError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return None


@FUZZ
@given(array=valid_arrays(), mutations=MUTATIONS)
def test_mutated_raw_files(scratch, array, mutations):
    raw = encode_idx(array)
    path = scratch / "raw-idx1-ubyte"
    path.write_bytes(mutate(raw, mutations, array.ndim))
    result = read_or_user_error(path)
    if result is not None:  # what the header says is exactly what came back
        assert result.size == int(np.prod(result.shape))


@FUZZ
@given(array=valid_arrays(), mutations=MUTATIONS, inside=st.booleans())
def test_mutated_gzip_files(scratch, array, mutations, inside):
    """Damage the gzip stream itself, or the IDX bytes inside an intact stream."""
    raw = encode_idx(array)
    data = (gzip_bytes(mutate(raw, mutations, array.ndim)) if inside
            else mutate(gzip_bytes(raw), mutations, 0))
    path = scratch / "file-idx3-ubyte.gz"
    path.write_bytes(data)
    read_or_user_error(path)


@FUZZ
@given(data=st.binary(max_size=2000), gz=st.booleans())
def test_random_bytes_from_disk(scratch, data, gz):
    path = scratch / ("random.gz" if gz else "random")
    path.write_bytes(data)
    read_or_user_error(path)


@FUZZ
@given(mutations=MUTATIONS)
def test_mutated_mnist_sized_header(mutations):
    """A full 60000x28x28 header over a short payload: refused without allocating 47 MB."""
    header = struct.pack(">HBBIII", 0, 0x08, 3, 60_000, 28, 28)
    data = mutate(header + bytes(64), mutations, 3)
    with contextlib.suppress(UserError):
        decode_idx(data, "train-images-idx3-ubyte")


def test_a_gzip_stream_with_a_bad_checksum_is_refused(scratch):
    data = bytearray(gzip_bytes(encode_idx(np.arange(10, dtype=np.uint8))))
    data[-8:-4] = struct.pack("<I", (zlib.crc32(b"other") & 0xFFFFFFFF))
    path = scratch / "crc.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged gzip data"):
        read_idx(path)
