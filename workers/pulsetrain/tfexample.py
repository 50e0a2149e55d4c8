"""Read and write serialized `tf.train.Example` messages without TensorFlow or protobuf.

Why this exists: workers decode Example payloads in the consumer loop, before anything reaches
TensorFlow, and the producer encodes them; pulling in TensorFlow (or generated protobuf code) for that
would slow start-up and tie the data path to a TensorFlow version. The messages involved are small
and fixed, so a minimal reader of the protobuf wire format covers them:

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }       // entries: { string key = 1; Feature value = 2; }
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1; }
    Int64List { repeated int64 value = 1; }

Packed and unpacked repeated numbers are both read; unknown fields are skipped, as protobuf does; wire
types that cannot occur in these messages are errors, which catches most garbage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["FeatureValue", "TFExampleError", "encode_example", "parse_example"]

FeatureValue = npt.NDArray[np.float32] | npt.NDArray[np.int64] | list[bytes]
"""A parsed feature: float_list → float32 array, int64_list → int64 array, bytes_list → list of bytes."""

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_MASK64 = (1 << 64) - 1


class TFExampleError(ValueError):
    """The payload is not a well-formed serialized `tf.train.Example`; the message says where."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise TFExampleError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise TFExampleError(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: bytes, start: int, end: int, what: str) -> list[tuple[int, int, int, int]]:
    """The fields of the message in buf[start:end] as (number, wire type, a, b).

    For length-delimited fields (a, b) is the payload's byte range; otherwise a is the value.
    """
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise TFExampleError(f"{what}: field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            out.append((number, wire, value, 0))
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise TFExampleError(f"{what}: field {number} claims {length} bytes, only {end - pos} left")
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if width > end - pos:
                raise TFExampleError(f"{what}: truncated fixed{width * 8} field {number}")
            out.append((number, wire, pos, pos + width))
            pos += width
        else:
            raise TFExampleError(f"{what}: unsupported wire type {wire} (field {number}) at byte {pos}")
    return out


def _expect(wire: int, wanted: int, what: str) -> None:
    if wire != wanted:
        raise TFExampleError(f"{what}: wire type {wire}, expected {wanted}")


def _float_list(buf: bytes, start: int, end: int) -> npt.NDArray[np.float32]:
    chunks: list[npt.NDArray[np.float32]] = []
    for number, wire, a, b in _fields(buf, start, end, "FloatList"):
        if number != 1:
            continue
        if wire not in (_LEN, _FIXED32):
            raise TFExampleError(f"FloatList: wire type {wire}, expected 2 (packed) or 5")
        if (b - a) % 4:
            raise TFExampleError(f"FloatList: packed length {b - a} is not a multiple of 4")
        chunks.append(np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a))
    joined = np.concatenate(chunks) if chunks else np.empty(0, dtype="<f4")
    return joined.astype(np.float32, copy=False)


def _int64_list(buf: bytes, start: int, end: int) -> npt.NDArray[np.int64]:
    values: list[int] = []
    for number, wire, a, b in _fields(buf, start, end, "Int64List"):
        if number != 1:
            continue
        if wire == _VARINT:
            values.append(a)
        elif wire == _LEN:
            pos = a
            while pos < b:
                value, pos = _varint(buf, pos, b)
                values.append(value)
        else:
            raise TFExampleError(f"Int64List: wire type {wire}, expected 0 or 2 (packed)")
    signed = [v - (1 << 64) if v >> 63 else v for v in values]
    return np.array(signed, dtype=np.int64)


def _bytes_list(buf: bytes, start: int, end: int) -> list[bytes]:
    values: list[bytes] = []
    for number, wire, a, b in _fields(buf, start, end, "BytesList"):
        if number == 1:
            _expect(wire, _LEN, "BytesList")
            values.append(bytes(buf[a:b]))
    return values


def _feature(buf: bytes, start: int, end: int) -> FeatureValue:
    value: FeatureValue = []
    readers: dict[int, Callable[[bytes, int, int], FeatureValue]] = {1: _bytes_list, 2: _float_list, 3: _int64_list}
    for number, wire, a, b in _fields(buf, start, end, "Feature"):
        if number in readers:
            _expect(wire, _LEN, "Feature")
            value = readers[number](buf, a, b)  # a oneof: the last one wins, as in protobuf
    return value


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """The features of a serialized `tf.train.Example`; raises `TFExampleError` when it is malformed."""
    buf = bytes(data)
    features: dict[str, FeatureValue] = {}
    for number, wire, a, b in _fields(buf, 0, len(buf), "Example"):
        if number != 1:
            continue
        _expect(wire, _LEN, "Example.features")
        for n2, w2, a2, b2 in _fields(buf, a, b, "Features"):
            if n2 != 1:
                continue
            _expect(w2, _LEN, "Features.feature")
            key, value = "", (b2, b2)
            for n3, w3, a3, b3 in _fields(buf, a2, b2, "Features.feature entry"):
                if n3 in (1, 2):
                    _expect(w3, _LEN, "Features.feature entry")
                    if n3 == 1:
                        try:
                            key = buf[a3:b3].decode("utf-8")
                        except UnicodeDecodeError:
                            raise TFExampleError(f"feature name at byte {a3} is not valid UTF-8") from None
                    else:
                        value = (a3, b3)
            features[key] = _feature(buf, *value)
    return features


def _varint_bytes(value: int) -> bytes:
    value &= _MASK64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | _LEN) + _varint_bytes(len(payload)) + payload


def _encode_feature(name: str, value: npt.ArrayLike | Sequence[bytes] | bytes) -> bytes:
    if isinstance(value, bytes):
        value = [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, bytes) for v in value):
        return _len_field(1, b"".join(_len_field(1, v) for v in value))
    array = np.asarray(value)
    if array.dtype.kind == "f":
        packed = array.astype("<f4").ravel().tobytes()
        return _len_field(2, _len_field(1, packed) if packed else b"")
    if array.dtype.kind in "iub":
        packed = b"".join(_varint_bytes(v) for v in array.astype(np.int64).ravel().tolist())
        return _len_field(3, _len_field(1, packed) if packed else b"")
    raise TypeError(f"feature {name!r}: cannot encode values of dtype {array.dtype} "
                    "(use floats, integers, bools or a list of bytes)")


def encode_example(features: Mapping[str, npt.ArrayLike | Sequence[bytes] | bytes]) -> bytes:
    """Serialize features as a `tf.train.Example`, as TensorFlow does (packed lists, one map entry each).

    Floating arrays become a float_list (float32), integer and bool arrays an int64_list, bytes a bytes_list.
    """
    entries = (_len_field(1, _len_field(1, name.encode("utf-8")) + _len_field(2, _encode_feature(name, value)))
               for name, value in features.items())
    return _len_field(1, b"".join(entries))
