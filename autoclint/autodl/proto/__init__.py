"""Message classes for the AutoDL schemas (``data_specification.proto``, ``example.proto``).

The descriptors are built at import time with ``descriptor_pb2`` in a private descriptor pool rather
than from committed ``*_pb2.py`` files: no ``protoc`` is needed, there is no generated code tied to a
protoc/runtime version pair (protobuf >= 5 rejects gencode newer than the runtime and warns on old
gencode), and a private pool cannot clash with the ``tensorflow.*`` messages TensorFlow registers.
The ``.proto`` files beside this module are the readable schema; a test checks both agree.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "bool": _F.TYPE_BOOL,
    "float": _F.TYPE_FLOAT,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}


def _add_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_name: str,
    *,
    repeated: bool = False,
    enum: bool = False,
    default: str | None = None,
    deprecated: bool = False,
    packed: bool | None = None,
    oneof_index: int | None = None,
) -> None:
    """Append one field; ``type_name`` is a scalar name or a fully qualified '.pkg.Message' (or enum)."""
    field = message.field.add(name=name, number=number)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name in _SCALAR_TYPES:
        field.type = _SCALAR_TYPES[type_name]
    else:
        field.type = _F.TYPE_ENUM if enum else _F.TYPE_MESSAGE
        field.type_name = type_name
    if default is not None:
        field.default_value = default
    if deprecated:
        field.options.deprecated = True
    if packed is not None:
        field.options.packed = packed
    if oneof_index is not None:
        field.oneof_index = oneof_index


def _add_map_field(
    message: descriptor_pb2.DescriptorProto, full_name: str, name: str, number: int, key: str, value: str
) -> None:
    """Append a ``map<key, value>`` field the way protoc lowers it: a repeated nested *Entry message."""
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _add_field(entry, "key", 1, key)
    _add_field(entry, "value", 2, value)
    _add_field(message, name, number, f"{full_name}.{entry_name}", repeated=True)


def _data_specification_file() -> descriptor_pb2.FileDescriptorProto:
    """The schema of ``data_specification.proto`` (package ``autodl``, proto2)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="autoclint/autodl/proto/data_specification.proto", package="autodl", syntax="proto2"
    )
    matrix = file.message_type.add(name="MatrixSpec")
    for number, name in enumerate(["col_count", "row_count"], start=1):
        _add_field(matrix, name, number, "int32")
    for number, name in enumerate(
        ["is_sequence_col", "is_sequence_row", "has_locality_col", "has_locality_row"], start=3
    ):
        _add_field(matrix, name, number, "bool")
    _add_field(matrix, "is_sparse", 7, "bool", deprecated=True)
    fmt = matrix.enum_type.add(name="Format")
    for number, name in enumerate(["DENSE", "SPARSE", "COMPRESSED"]):
        fmt.value.add(name=name, number=number)
    _add_field(matrix, "format", 8, ".autodl.MatrixSpec.Format", enum=True, default="DENSE")
    _add_field(matrix, "num_channels", 9, "int32", default="-1")

    spec = file.message_type.add(name="DataSpecification")
    _add_field(spec, "matrix_spec", 1, ".autodl.MatrixSpec", repeated=True)
    _add_field(spec, "is_sequence", 2, "bool")
    _add_field(spec, "output_dim", 3, "int32")
    for number, name in enumerate(
        ["label_to_index_map", "feature_to_index_map", "channel_to_index_map"], start=4
    ):
        _add_map_field(spec, ".autodl.DataSpecification", name, number, "string", "int32")
    _add_field(spec, "sequence_size", 7, "int32", default="1")
    _add_field(spec, "sample_count", 8, "int32")
    return file


def _example_file() -> descriptor_pb2.FileDescriptorProto:
    """The schema of ``example.proto``: TensorFlow's SequenceExample under package ``autoclint.autodl``."""
    pkg = ".autoclint.autodl"
    file = descriptor_pb2.FileDescriptorProto(
        name="autoclint/autodl/proto/example.proto", package="autoclint.autodl", syntax="proto3"
    )
    _add_field(file.message_type.add(name="BytesList"), "value", 1, "bytes", repeated=True)
    _add_field(file.message_type.add(name="FloatList"), "value", 1, "float", repeated=True, packed=True)
    _add_field(file.message_type.add(name="Int64List"), "value", 1, "int64", repeated=True, packed=True)
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(["bytes_list", "float_list", "int64_list"], start=1):
        kind = "".join(part.capitalize() for part in name.split("_"))
        _add_field(feature, name, number, f"{pkg}.{kind}", oneof_index=0)
    features = file.message_type.add(name="Features")
    _add_map_field(features, f"{pkg}.Features", "feature", 1, "string", f"{pkg}.Feature")
    _add_field(file.message_type.add(name="FeatureList"), "feature", 1, f"{pkg}.Feature", repeated=True)
    lists = file.message_type.add(name="FeatureLists")
    _add_map_field(lists, f"{pkg}.FeatureLists", "feature_list", 1, "string", f"{pkg}.FeatureList")
    _add_field(file.message_type.add(name="Example"), "features", 1, f"{pkg}.Features")
    sequence = file.message_type.add(name="SequenceExample")
    _add_field(sequence, "context", 1, f"{pkg}.Features")
    _add_field(sequence, "feature_lists", 2, f"{pkg}.FeatureLists")
    return file


def _build_pool() -> descriptor_pool.DescriptorPool:
    """A private pool holding both schemas."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_data_specification_file())
    pool.Add(_example_file())
    return pool


POOL = _build_pool()
MatrixSpec = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autodl.MatrixSpec"))
DataSpecification = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autodl.DataSpecification"))
SequenceExample = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("autoclint.autodl.SequenceExample")
)
Example = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autoclint.autodl.Example"))
Features = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autoclint.autodl.Features"))
Feature = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autoclint.autodl.Feature"))
FeatureList = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autoclint.autodl.FeatureList"))
FeatureLists = message_factory.GetMessageClass(POOL.FindMessageTypeByName("autoclint.autodl.FeatureLists"))

__all__ = [
    "DataSpecification",
    "Example",
    "Feature",
    "FeatureList",
    "FeatureLists",
    "Features",
    "MatrixSpec",
    "SequenceExample",
]
