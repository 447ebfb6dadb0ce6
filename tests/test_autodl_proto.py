"""The schemas built in Python agree with the .proto files and with TensorFlow's wire format."""

import re
from pathlib import Path

import pytest

from autoclint.autodl import proto

PROTO_DIR = Path(proto.__file__).parent
FIELD = re.compile(r"^\s*(?:optional|repeated)?\s*([\w.<>, ]+?)\s+(\w+)\s*=\s*(\d+)", re.MULTILINE)


def _fields_in_proto_file(text: str) -> dict[str, dict[str, int]]:
    """message name -> {field name: number}, from a .proto file's text (messages are not nested)."""
    messages = {}
    for match in re.finditer(r"message (\w+) \{(.*?)\n\}", text, re.DOTALL):
        body = re.sub(r"enum \w+ \{.*?\}", "", match.group(2), flags=re.DOTALL)
        body = re.sub(r"oneof \w+ \{", "", body)
        messages[match.group(1)] = {m.group(2): int(m.group(3)) for m in FIELD.finditer(body)}
    return messages


@pytest.mark.parametrize(
    ("filename", "package"),
    [("data_specification.proto", "autodl"), ("example.proto", "autoclint.autodl")],
)
def test_descriptors_match_the_proto_files(filename, package):
    expected = _fields_in_proto_file((PROTO_DIR / filename).read_text())
    assert expected, filename
    for message_name, fields in expected.items():
        built = proto.POOL.FindMessageTypeByName(f"{package}.{message_name}")
        assert {f.name: f.number for f in built.fields} == fields, message_name


def test_matrix_spec_defaults_and_enum():
    spec = proto.MatrixSpec()
    assert spec.format == proto.MatrixSpec.DENSE
    assert spec.num_channels == -1
    assert proto.DataSpecification().sequence_size == 1
    assert [v.name for v in proto.MatrixSpec.DESCRIPTOR.enum_types_by_name["Format"].values] == [
        "DENSE", "SPARSE", "COMPRESSED"]
    field = proto.DataSpecification.DESCRIPTOR.fields_by_name["label_to_index_map"]
    assert field.message_type.GetOptions().map_entry
    assert field.is_repeated


def test_sequence_example_is_wire_compatible_with_tensorflow():
    tf = pytest.importorskip("tensorflow")
    ours = proto.SequenceExample()
    ours.context.feature["label_index"].int64_list.value.extend([3, 7])
    ours.context.feature["label_score"].float_list.value.extend([1.0, 0.5])
    ours.feature_lists.feature_list["0_compressed"].feature.add().bytes_list.value.append(b"\xff\xd8\xff")
    ours.feature_lists.feature_list["0_dense_input"].feature.add().float_list.value.extend([0.25, 2.0])
    theirs = tf.train.SequenceExample.FromString(ours.SerializeToString())
    assert list(theirs.context.feature["label_index"].int64_list.value) == [3, 7]
    assert list(theirs.context.feature["label_score"].float_list.value) == [1.0, 0.5]
    assert theirs.feature_lists.feature_list["0_compressed"].feature[0].bytes_list.value[0] == b"\xff\xd8\xff"
    assert proto.SequenceExample.FromString(theirs.SerializeToString()) == ours
