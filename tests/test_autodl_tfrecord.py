"""TFRecord framing: CRC32C, written files readable by TensorFlow, corruption found and located."""

import os
import struct

import numpy as np
import pytest

from autoclint.autodl.errors import AutoDLFormatError
from autoclint.autodl.tfrecord import (
    crc32c,
    crc32c_many,
    masked_crc,
    read_records,
    scan_records,
    write_records,
)


def test_crc32c_matches_the_standard_check_values():
    # RFC 3720 (iSCSI) B.4 test vectors and the usual "123456789" check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_vectorised_crc_equals_the_byte_loop_for_all_kinds_of_lengths():
    rng = np.random.default_rng(0)
    lengths = [0, 1, 3, 4, 5, 63, 64, 65, 127, 128, 129, 1000, 4097, 70_000]
    buffers = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]
    assert crc32c_many(buffers).tolist() == [crc32c(b) for b in buffers]


def test_records_round_trip_and_are_located(tmp_path):
    records = [os.urandom(n) for n in (0, 10, 300, 5000)]
    path = tmp_path / "sample.tfrecord"
    assert write_records(path, records) == 4
    locations = scan_records(path)
    assert [loc.index for loc in locations] == [0, 1, 2, 3]
    assert list(read_records(locations)) == records


def test_written_file_is_read_by_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    records = [b"first", os.urandom(1000), b""]
    path = tmp_path / "sample.tfrecord"
    write_records(path, records)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == records


def test_masked_crc_is_the_same_for_ints_and_arrays():
    values = np.array([0, 1, 0xFFFFFFFF, 0x12345678], dtype=np.uint32)
    assert masked_crc(values).tolist() == [masked_crc(int(v)) for v in values]


@pytest.fixture()
def three_records(tmp_path):
    path = tmp_path / "sample-x.tfrecord"
    write_records(path, [b"a" * 100, b"b" * 100, b"c" * 100])
    return path, path.read_bytes()


def test_data_corruption_names_file_and_record(three_records):
    path, raw = three_records
    record_size = 12 + 100 + 4
    corrupted = bytearray(raw)
    corrupted[record_size + 12 + 50] ^= 0x01  # one bit inside record 1's data
    path.write_bytes(bytes(corrupted))
    with pytest.raises(AutoDLFormatError, match=rf"{path.name}: record 1: data CRC mismatch"):
        scan_records(path)
    assert len(scan_records(path, check_data_crc=False)) == 3  # header-only scan does not read data


def test_length_corruption_names_file_and_record(three_records):
    path, raw = three_records
    corrupted = bytearray(raw)
    corrupted[2 * (12 + 100 + 4)] ^= 0x01  # record 2's length field
    path.write_bytes(bytes(corrupted))
    with pytest.raises(AutoDLFormatError, match=r"record 2: length CRC mismatch"):
        scan_records(path, check_data_crc=False)


@pytest.mark.parametrize("cut", [5, 40])
def test_truncated_file_names_file_and_record(three_records, cut):
    path, raw = three_records
    path.write_bytes(raw[:-cut])
    with pytest.raises(AutoDLFormatError, match=rf"{path.name}: record 2: truncated"):
        scan_records(path)


def test_truncated_header(three_records):
    path, raw = three_records
    path.write_bytes(raw + struct.pack("<Q", 10)[:5])
    with pytest.raises(AutoDLFormatError, match=r"record 3: truncated header"):
        scan_records(path)
