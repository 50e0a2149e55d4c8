"""The tf.train.Example wire-format reader and writer, against byte strings TensorFlow itself produces."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pulsetrain.tfexample import TFExampleError, encode_example, parse_example

# tf.train.Example(features=tf.train.Features(feature={"a": Feature(int64_list=Int64List(value=[1]))}))
#   .SerializeToString(), worked out by hand from the .proto definitions.
INT_A1 = bytes.fromhex("0a0c" "0a0a" "0a0161" "1205" "1a03" "0a0101")
# feature {"x": float_list [1.0]}
FLOAT_X1 = bytes.fromhex("0a0f" "0a0d" "0a0178" "1208" "1206" "0a04" "0000803f")
# feature {"b": bytes_list [b"hi", b""]}
BYTES_B = bytes.fromhex("0a0f" "0a0d" "0a0162" "1208" "0a06" "0a026869" "0a00")


def test_encoder_matches_tensorflow_bytes() -> None:
    assert encode_example({"a": np.array([1])}) == INT_A1
    assert encode_example({"x": np.array([1.0], dtype=np.float32)}) == FLOAT_X1
    assert encode_example({"b": [b"hi", b""]}) == BYTES_B


def test_parser_reads_tensorflow_bytes() -> None:
    a = parse_example(INT_A1)["a"]
    assert isinstance(a, np.ndarray) and a.dtype == np.int64 and a.tolist() == [1]
    x = parse_example(FLOAT_X1)["x"]
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.tolist() == [1.0]
    assert parse_example(BYTES_B) == {"b": [b"hi", b""]}


def test_round_trip_of_every_list_kind() -> None:
    ints = np.array([0, 1, -1, 2**62, -(2**63), 2**63 - 1, 300], dtype=np.int64)
    floats = np.array([0.0, -1.5, 3.4e38, np.inf, 1e-45], dtype=np.float32)
    parsed = parse_example(encode_example({"i": ints, "f": floats, "b": [b"\x00\xff"], "flag": np.array([True]),
                                           "empty_f": np.zeros(0, np.float32), "ünïcode": np.array([7])}))
    assert np.array_equal(parsed["i"], ints) and np.array_equal(parsed["f"], floats)
    assert parsed["b"] == [b"\x00\xff"] and list(parsed["flag"]) == [1] and list(parsed["ünïcode"]) == [7]
    assert len(parsed["empty_f"]) == 0
    assert parse_example(b"") == {}


def test_unpacked_repeated_fields_and_unknown_fields() -> None:
    # Int64List with two unpacked values (tag 0x08) and FloatList with one unpacked fixed32 (tag 0x0d).
    int_list = bytes.fromhex("0805" "08ffffffffffffffffff01")  # 5, -1
    float_list = bytes.fromhex("0d" "0000c03f")  # 1.5
    feature_i = b"\x1a" + bytes([len(int_list)]) + int_list
    feature_f = b"\x12" + bytes([len(float_list)]) + float_list
    entries = b"".join(b"\x0a" + bytes([len(e)]) + e for e in (
        b"\x0a\x01i\x12" + bytes([len(feature_i)]) + feature_i,
        b"\x0a\x01f\x12" + bytes([len(feature_f)]) + feature_f))
    unknown = bytes.fromhex("2807")  # field 5, varint 7: skipped as protobuf does
    example = unknown + b"\x0a" + bytes([len(entries)]) + entries
    parsed = parse_example(example)
    assert list(parsed["i"]) == [5, -1] and list(parsed["f"]) == [1.5]


def test_features_split_over_two_messages_are_merged() -> None:
    merged = parse_example(INT_A1 + FLOAT_X1)
    assert sorted(merged) == ["a", "x"]


@pytest.mark.parametrize(("payload", "message"), [
    (INT_A1[:-1], "Example: field 1 claims 12 bytes, only 11 left"),
    (b"\xff\xff", "truncated varint at byte 2"),
    (b"\x00\x01", "Example: field number 0"),
    (b"\x0b\x00", "Example: unsupported wire type 3 (field 1)"),
    (b"\x08\x01", "Example.features: wire type 0, expected 2"),
    (b"\x0a\x02\x08\x01", "Features.feature: wire type 0, expected 2"),
    (b"\xff" * 11, "varint longer than 10 bytes"),
    (bytes.fromhex("0a0e" "0a0c" "0a0178" "1207" "1205" "0a03000000"),
     "FloatList: packed length 3 is not a multiple of 4"),
    (bytes.fromhex("0a07" "0a05" "0a03ff6161"), "feature name at byte 6 is not valid UTF-8"),
])
def test_malformed_payloads_raise_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(TFExampleError, match=re.escape(message)):
        parse_example(payload)


def test_encoder_refuses_what_example_cannot_hold() -> None:
    with pytest.raises(TypeError, match="feature 's': cannot encode values of dtype <U1"):
        encode_example({"s": np.array(["a"])})
