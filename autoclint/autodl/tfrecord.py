"""TFRecord framing without TensorFlow: CRC32C, writing records, and scanning files with every check.

A record is ``uint64 length | masked crc32c(length) | data | masked crc32c(data)`` (little-endian).
CRC32C is computed with numpy, many records at once: each record is cut into 64-byte chunks whose
CRCs are computed in parallel, then folded per record with a precomputed "append 64 zero bytes"
linear map, so a file is checked at roughly 100 MB/s instead of the ~2 MB/s of a byte loop.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoclint.autodl.errors import AutoDLFormatError

logger = logging.getLogger(__name__)

_POLYNOMIAL = 0x82F63B78  # CRC32C (Castagnoli), bit-reflected
_MASK_DELTA = 0xA282EAD8
_CHUNK = 64
_BATCH_BYTES = 32 << 20
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def _byte_table() -> np.ndarray:
    """The classic 256-entry table: CRC register after shifting in one byte from a zero register."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()


def _apply_shift(tables: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Apply a linear register map given by its four byte tables."""
    low = tables[0][state & 0xFF] ^ tables[1][(state >> 8) & 0xFF]
    return low ^ tables[2][(state >> 16) & 0xFF] ^ tables[3][state >> 24]


def _zero_run_tables(levels: int = 40) -> np.ndarray:
    """Byte tables of 'register after appending _CHUNK * 2**level zero bytes', for each level."""
    tables = np.empty((levels, 4, 256), dtype=np.uint32)
    basis = np.stack([np.arange(256, dtype=np.uint32) << np.uint32(8 * k) for k in range(4)])
    state = basis.copy()
    for _ in range(_CHUNK):
        state = _TABLE[state & 0xFF] ^ (state >> 8)
    tables[0] = state
    for level in range(1, levels):
        tables[level] = _apply_shift(tables[level - 1], _apply_shift(tables[level - 1], basis))
    return tables


_ZERO_RUNS = _zero_run_tables()


def crc32c(data: bytes) -> int:
    """CRC32C of one buffer (byte loop; the reference for :func:`crc32c_many`)."""
    crc = 0xFFFFFFFF
    table = _TABLE.tolist()
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_same_group(buffers: Sequence[bytes]) -> np.ndarray:
    """CRC32C of buffers of >= 4 bytes, vectorised over buffers and 64-byte chunks.

    The initial register 0xFFFFFFFF equals a zero register with the first four message bytes
    inverted; a zero register is unchanged by leading zero bytes, so buffers are right-aligned in
    zero-padded rows of a power-of-two number of chunks, and chunk CRCs are folded pairwise:
    crc(A + B) = shift_len(B)(crc(A)) ^ crc(B).
    """
    n_chunks = 1 << max(0, int(np.ceil(np.log2(-(-max(len(b) for b in buffers) // _CHUNK)))))
    width = n_chunks * _CHUNK
    rows = np.zeros((len(buffers), width), dtype=np.uint8)
    for i, buffer in enumerate(buffers):
        start = width - len(buffer)
        rows[i, start:] = np.frombuffer(buffer, dtype=np.uint8)
        rows[i, start : start + 4] ^= 0xFF
    columns = np.ascontiguousarray(rows.reshape(-1, _CHUNK).T)
    state = np.zeros(columns.shape[1], dtype=np.uint32)
    for column in columns:
        state = _TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    crcs = state.reshape(len(buffers), n_chunks)
    level = 0
    while crcs.shape[1] > 1:
        crcs = _apply_shift(_ZERO_RUNS[level], crcs[:, 0::2]) ^ crcs[:, 1::2]
        level += 1
    return crcs[:, 0] ^ np.uint32(0xFFFFFFFF)


def crc32c_many(buffers: Sequence[bytes]) -> np.ndarray:
    """CRC32C of each buffer, as a uint32 array (fast path for checking whole files)."""
    result = np.empty(len(buffers), dtype=np.uint32)
    lengths = np.array([len(b) for b in buffers], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    group: list[int] = []
    for index in order:
        if lengths[index] < 4:
            result[index] = crc32c(buffers[index])
            continue
        if group and (len(group) + 1) * lengths[index] > _BATCH_BYTES:
            result[group] = _crc32c_same_group([buffers[i] for i in group])
            group = []
        group.append(int(index))
    if group:
        result[group] = _crc32c_same_group([buffers[i] for i in group])
    return result


def masked_crc(crc: int | np.ndarray) -> int | np.ndarray:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant (mod 2**32)."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint64)
        return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def write_records(path: str | Path, records: Iterable[bytes]) -> int:
    """Write serialized records to a TFRecord file; returns how many were written."""
    count = 0
    with open(path, "wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length + struct.pack("<I", masked_crc(crc32c(length))))
            handle.write(data)
            handle.write(struct.pack("<I", masked_crc(int(crc32c_many([data])[0]))))
            count += 1
    return count


@dataclass(frozen=True)
class RecordLocation:
    """Where one record's data lies: file, index of the record in that file, byte offset and length."""

    path: Path
    index: int
    offset: int
    length: int


def _check_batch(path: Path, first_index: int, headers: list[bytes], header_crcs: list[int],
                 datas: list[bytes], data_crcs: list[int]) -> None:
    """Compare stored masked CRCs with computed ones for a batch of consecutive records."""
    bad_header = np.nonzero(masked_crc(crc32c_many(headers)) != np.array(header_crcs, dtype=np.uint32))[0]
    if bad_header.size:
        raise AutoDLFormatError(f"{path}: record {first_index + int(bad_header[0])}: length CRC mismatch "
                                "(corrupted file)")
    bad_data = np.nonzero(masked_crc(crc32c_many(datas)) != np.array(data_crcs, dtype=np.uint32))[0]
    if bad_data.size:
        raise AutoDLFormatError(f"{path}: record {first_index + int(bad_data[0])}: data CRC mismatch "
                                "(corrupted file)")


def scan_records(
    path: str | Path,
    check_data_crc: bool = True,
    inspect: Callable[[RecordLocation, bytes], None] | None = None,
) -> list[RecordLocation]:
    """Locate every record of a TFRecord file, checking framing and CRCs; errors name file and record.

    Length CRCs are always checked (cheap); data CRCs when ``check_data_crc`` (reads the whole file),
    in which case ``inspect(location, data)`` is also called on each record's data.
    """
    path = Path(path)
    locations: list[RecordLocation] = []
    headers: list[bytes] = []
    header_crcs: list[int] = []
    datas: list[bytes] = []
    data_crcs: list[int] = []
    batch_start = pending_bytes = offset = 0
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        while True:
            index = len(locations)
            header = handle.read(_HEADER.size)
            if not header:
                break
            if len(header) < _HEADER.size:
                raise AutoDLFormatError(
                    f"{path}: record {index}: truncated header ({len(header)} of {_HEADER.size} bytes)"
                )
            length, length_crc = _HEADER.unpack(header)
            headers.append(header[:8])
            header_crcs.append(length_crc)
            data_offset = offset + _HEADER.size
            if data_offset + length + _FOOTER.size > file_size:
                _check_batch(path, batch_start, headers, header_crcs, [], [])
                raise AutoDLFormatError(f"{path}: record {index}: truncated (needs {length} data bytes, "
                                        f"file ends {file_size - data_offset} bytes after the header)")
            if check_data_crc:
                datas.append(handle.read(length))
                data_crcs.append(_FOOTER.unpack(handle.read(_FOOTER.size))[0])
                pending_bytes += length
            else:
                handle.seek(length + _FOOTER.size, 1)
            locations.append(RecordLocation(path, index, data_offset, length))
            if check_data_crc and inspect is not None:
                inspect(locations[-1], datas[-1])
            offset = data_offset + length + _FOOTER.size
            if pending_bytes > _BATCH_BYTES or len(headers) >= 65536:
                _check_batch(path, batch_start, headers, header_crcs, datas, data_crcs)
                batch_start, pending_bytes = len(locations), 0
                headers, header_crcs, datas, data_crcs = [], [], [], []
    _check_batch(path, batch_start, headers, header_crcs, datas, data_crcs)
    return locations


def read_records(locations: Sequence[RecordLocation]) -> Iterator[bytes]:
    """Yield the data of the given records, opening each file once for a run of its records."""
    handle = None
    current: Path | None = None
    try:
        for location in locations:
            if location.path != current:
                if handle is not None:
                    handle.close()
                handle, current = open(location.path, "rb"), location.path
            handle.seek(location.offset)
            data = handle.read(location.length)
            if len(data) != location.length:
                raise AutoDLFormatError(
                    f"{location.path}: record {location.index}: file shrank while reading"
                )
            yield data
    finally:
        if handle is not None:
            handle.close()
