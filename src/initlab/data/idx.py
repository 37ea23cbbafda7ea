"""The IDX file format of MNIST and its kin (Fashion-MNIST, KMNIST, EMNIST, ...).

Layout (LeCun, Cortes & Burges, "The MNIST database of handwritten digits";
all integers big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     data type code: 0x08 uint8, 0x09 int8, 0x0B int16,
                0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 x d bytes size of each dimension, uint32
    then        prod(sizes) * itemsize bytes of data, row-major

so a well-formed file is exactly ``4 + 4 d + prod(sizes) * itemsize`` bytes
long. Files may be gzipped; that is recognised from their first two bytes
(``1f 8b``), not from the name.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

#: IDX data type code -> big-endian numpy dtype.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _valid_codes() -> str:
    return ", ".join(f"0x{code:02X} {dtype.name}" for code, dtype in DTYPES.items())


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip data ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian numpy array.

    Checks the magic number (two zero bytes, a known type code, at least one
    dimension) and that the file length equals ``4 + 4 d + prod(sizes) *
    itemsize``; anything else raises a ValueError that names the file and
    what is wrong.

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the 4-byte IDX magic number")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] or raw[1]:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08X}; IDX files start with two zero bytes"
        )
    code, ndim = raw[2], raw[3]
    if code not in DTYPES:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08X}: unknown data type code 0x{code:02X}; "
            f"valid: {_valid_codes()}"
        )
    if ndim == 0:
        raise ValueError(f"{path}: bad magic number 0x{magic:08X}: 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: header declares {ndim} dimensions ({header} header bytes) "
            f"but the file has only {len(raw)} bytes"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = DTYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: size mismatch: header says shape {shape} of {dtype.name} "
            f"= {expected} bytes, file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The inverse of :func:`read_idx`: use it to turn your own arrays into an IDX
    folder that ``initlab.data.load("idx", data_dir=...)`` reads.
    """
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES or array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"{path}: cannot write a {array.ndim}-d {array.dtype} array as IDX; "
            f"valid types: {_valid_codes()}, 1 to 255 dimensions"
        )
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
