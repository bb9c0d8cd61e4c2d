"""IDX files, the format MNIST is published in: read, check and write them.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then
the values in row-major order, big-endian::

    magic = 0x00 0x00 <dtype code> <ndim>     e.g. 0x00000803: uint8, 3 dims
    dims  = ndim x uint32                     e.g. 60000, 28, 28
    data  = prod(dims) values of the dtype

A name ending in ``.gz`` is gzip-compressed, anything else is plain. Every
problem with a file's bytes (bad gzip stream, wrong magic, unknown dtype, a
payload shorter or longer than the header promises) raises
:class:`rnnlab.core.errors.UserError` naming the file; no other exception escapes
the readers, whatever the bytes.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from rnnlab.core.errors import DataError
from rnnlab.core.fileio import atomic_write_bytes

# IDX dtype code -> big-endian numpy dtype (the table of the format's spec).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# A real MNIST file decompresses to 47 MB; the cap stops a gzip bomb (or a
# mistaken multi-GB file) from exhausting memory before the header is checked.
MAX_IDX_BYTES = 1 << 30
_CHUNK = 1 << 20
MAX_NDIM = 32  # numpy 1's limit (numpy 2 allows 64); MNIST needs 3


def decode_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into a native-endian numpy array (a copy).

    Args:
        data: the whole file, header and payload.
        source: the file name to put in error messages.

    Raises:
        UserError: wrong magic, unknown dtype, or a payload whose size is not
            exactly the product of the dimensions times the item size.
    """
    dtype, dims, offset = _parse_header(data, source)
    expected = math.prod(dims) * dtype.itemsize
    # Compare sizes before touching the payload: a header claiming more than
    # the file holds is refused without allocating anything.
    actual = len(data) - offset
    if actual != expected:
        kind = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"{source}: IDX file is {kind}: header {tuple(dims)} needs {expected} bytes "
            f"of data, found {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=offset)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def _parse_header(data: bytes, source: str) -> tuple[np.dtype, list[int], int]:
    """Return (dtype, dims, payload offset) from the IDX header of ``data``."""
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file ({len(data)} bytes, too short for a header)")
    zero, code, ndim = struct.unpack_from(">HBB", data)
    if zero != 0:
        raise DataError(
            f"{source}: not an IDX file (magic number 0x{bytes(data[:4]).hex()} "
            "should start with 0x0000)"
        )
    if code not in IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(
            f"{source}: IDX header declares {ndim} dimensions (1..{MAX_NDIM} supported)"
        )
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{source}: IDX header truncated ({ndim} dimensions declared)")
    dims = list(struct.unpack_from(f">{ndim}I", data, 4))
    # With a zero among the dims the payload is empty whatever the others say,
    # but numpy still refuses a shape whose other dims multiply past its limits.
    if math.prod(d for d in dims if d) * IDX_DTYPES[code].itemsize > MAX_IDX_BYTES:
        raise DataError(f"{source}: IDX dimensions {tuple(dims)} are implausibly large")
    return IDX_DTYPES[code], dims, offset


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise ``array`` as uncompressed IDX bytes (the inverse of :func:`decode_idx`)."""
    array = np.asarray(array)
    code = _dtype_code(array.dtype)
    if not 1 <= array.ndim <= MAX_NDIM or any(d >= 2**32 for d in array.shape):
        raise DataError(f"cannot write an IDX file for an array of shape {array.shape}")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return header + payload


def _dtype_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        if idx_dtype.newbyteorder("=") == dtype.newbyteorder("="):
            return code
    names = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise DataError(f"IDX cannot store dtype {dtype}; use one of {names}")


def gunzip(data: bytes, source: str, limit: int = MAX_IDX_BYTES) -> bytes:
    """Decompress gzip ``data`` in chunks, refusing more than ``limit`` bytes of output.

    Raises:
        UserError: not gzip, a damaged or cut-off stream, or output over ``limit``.
    """
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            while chunk := stream.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise DataError(f"{source}: decompresses to more than {limit} bytes")
    except (OSError, EOFError, zlib.error, ValueError) as err:
        # BadGzipFile is an OSError; a cut-off stream is an EOFError.
        raise DataError(f"{source}: damaged gzip data ({err})") from None
    return bytes(out)


def gzip_bytes(data: bytes) -> bytes:
    """Compress ``data`` reproducibly: no file name and mtime 0 in the gzip header."""
    buffer = io.BytesIO()
    # Level 6: MNIST's 47 MB of training images compress in under a second,
    # against 12 s at the default level 9 for a file only 2% smaller.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=6, mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def is_gzip_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix == ".gz"


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` (at most MAX_IDX_BYTES).

    Any OS problem becomes a UserError naming it.
    """
    try:
        if Path(path).stat().st_size > MAX_IDX_BYTES:
            raise DataError(f"{path}: larger than {MAX_IDX_BYTES} bytes; not an MNIST IDX file")
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


def decode_idx_file_bytes(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Decode the bytes of a file named ``path`` (gunzipped first if it ends in .gz)."""
    if is_gzip_name(path):
        data = gunzip(data, str(path))
    return decode_idx(data, str(path))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip if the name ends in ``.gz``) into a numpy array.

    Raises:
        UserError: the file is missing, unreadable, or not a valid IDX file.
    """
    return decode_idx_file_bytes(read_file_bytes(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically write ``array`` to ``path`` as IDX, gzip-compressed if it ends in ``.gz``."""
    data = encode_idx(array)
    atomic_write_bytes(path, gzip_bytes(data) if is_gzip_name(path) else data)
