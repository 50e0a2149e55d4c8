"""Batch decoding: exact round trips per format, and one precise reason for every kind of malformed payload."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

from pulsetrain.config_model import DataConfig, FieldSpec, Format
from pulsetrain.decode import Decoder
from pulsetrain.encode import encode_batch
from pulsetrain.tfexample import encode_example

FORMATS: tuple[Format, ...] = ("raw", "json", "csv", "tfexample")


def digits(fmt: Format) -> DataConfig:
    return DataConfig(format=fmt, features=(FieldSpec(name="pixels", dtype="float32", shape=(64,)),),
                      label=FieldSpec(name="digit", dtype="int64"))


def mixed(fmt: Format) -> DataConfig:
    """Several dtypes and shapes at once, so a layout mix-up cannot go unnoticed."""
    return DataConfig(format=fmt, features=(
        FieldSpec(name="img", dtype="float32", shape=(3, 4)),
        FieldSpec(name="flag", dtype="bool"),
        FieldSpec(name="counts", dtype="int16", shape=(2,)),
        FieldSpec(name="wide", dtype="float64", shape=(1,)),
        FieldSpec(name="small", dtype="uint8"),
    ), label=FieldSpec(name="y", dtype="int32"))


def mixed_rows(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    features = {
        "img": rng.normal(size=(n, 3, 4)).astype(np.float32),
        "flag": rng.random(n) < 0.5,
        "counts": rng.integers(-30000, 30000, size=(n, 2)).astype(np.int16),
        "wide": rng.normal(size=(n, 1)) * 1e200,
        "small": rng.integers(0, 256, size=n).astype(np.uint8),
    }
    return features, rng.integers(-5, 5, size=n).astype(np.int32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact(fmt: Format) -> None:
    data = mixed(fmt)
    if fmt == "tfexample":  # float_list carries float32 only: keep the float64 field within float32
        data = DataConfig(format=fmt, features=data.features[:3] + data.features[4:], label=data.label)
    features, labels = mixed_rows(17)
    features = {k: v for k, v in features.items() if k in {f.name for f in data.features}}
    batch = Decoder(data).decode(encode_batch(data, features, labels))
    assert batch.rejects == [] and batch.valid_index.tolist() == list(range(17)) and len(batch) == 17
    for spec in data.features:
        got = batch.features[spec.name]
        assert got.dtype == np.dtype(spec.dtype) and got.shape == (17, *spec.shape) and got.flags.c_contiguous
        assert np.array_equal(got, features[spec.name]), spec.name
    assert batch.labels.dtype == np.int32 and np.array_equal(batch.labels, labels)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_batch_has_typed_empty_arrays(fmt: Format) -> None:
    batch = Decoder(digits(fmt)).decode([])
    assert batch.features["pixels"].shape == (0, 64) and batch.features["pixels"].dtype == np.float32
    assert batch.labels.shape == (0,) and batch.labels.dtype == np.int64 and batch.rejects == []


def good(fmt: Format, label: int = 3, value: float = 0.5) -> bytes:
    return encode_batch(digits(fmt), {"pixels": np.full((1, 64), value, np.float32)}, np.array([label]))[0]


def as_json(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


PIXELS = [0.5] * 64
RAW_SIZE = 64 * 4 + 8
CORPUS: list[tuple[Format, bytes, str]] = [
    ("json", b"", "empty: payload is empty"),
    ("json", b'{"pixels": [1, 2', "json: invalid JSON at char 16 (Expecting ',' delimiter)"),
    ("json", b'{"pixels": "\xff"}', "json: payload is not valid UTF-8 at byte 12"),
    ("json", b"[1, 2, 3]", "json: expected an object, got a list"),
    ("json", as_json(digit=1), "json: missing field 'pixels'"),
    ("json", as_json(pixels=[0.5] * 63, digit=1), "shape: field 'pixels' has 63 values, expected 64 (shape [64])"),
    ("json", as_json(pixels=[[0.5] * 32, [0.5] * 31], digit=1),
     "shape: field 'pixels' is ragged (nested lists of different lengths)"),
    ("json", as_json(pixels=[[0.5] * 32] * 2, digit=1), "shape: field 'pixels' has shape [2, 32], expected [64]"),
    ("json", as_json(pixels=PIXELS, digit=[1]), "shape: field 'digit' has shape [1], expected []"),
    ("json", as_json(pixels=PIXELS, digit="x"), "dtype: field 'digit' value 'x' is not int64"),
    ("json", as_json(pixels=PIXELS, digit=3.5), "dtype: field 'digit' value 3.5 is not int64"),
    ("json", as_json(pixels=[*PIXELS[:5], None, *PIXELS[6:]], digit=1),
     "dtype: field 'pixels' value None is not float32"),
    ("json", as_json(pixels=[True] * 64, digit=1), "dtype: field 'pixels' value True is not float32"),
    ("json", as_json(pixels=[*PIXELS[:63], math.nan], digit=1), "non-finite: field 'pixels' contains NaN"),
    ("json", as_json(pixels=[math.inf, *PIXELS[1:]], digit=1), "non-finite: field 'pixels' contains Inf"),
    ("json", as_json(pixels=[1e39, *PIXELS[1:]], digit=1),
     "range: field 'pixels' value 1e+39 is out of range for float32 (±3.40282e+38)"),
    ("json", as_json(pixels=PIXELS, digit=12), "label: field 'digit' value 12 is out of range 0..9 (numClasses 10)"),
    ("json", as_json(pixels=PIXELS, digit=-1), "label: field 'digit' value -1 is out of range 0..9 (numClasses 10)"),
    ("raw", b"", "empty: payload is empty"),
    ("raw", good("raw")[:-1], f"raw: payload is {RAW_SIZE - 1} bytes, expected {RAW_SIZE}"),
    ("raw", good("raw") + b"\x00", f"raw: payload is {RAW_SIZE + 1} bytes, expected {RAW_SIZE}"),
    ("raw", good("raw", value=math.nan), "non-finite: field 'pixels' contains NaN"),
    ("raw", good("raw", label=10), "label: field 'digit' value 10 is out of range 0..9 (numClasses 10)"),
    ("csv", b",".join([b"0.5"] * 64), "csv: 64 columns, expected 65"),
    ("csv", b",".join([b"0.5"] * 2 + [b"abc"] + [b"0.5"] * 62),
     "csv: column 3 (field 'pixels') value 'abc' is not a number"),
    ("csv", b",".join([b"0.5"] * 64 + [b""]), "csv: column 65 (field 'digit') value '' is not a number"),
    ("csv", b",".join([b"0.5"] * 64 + [b"2.5"]), "dtype: field 'digit' value 2.5 is not int64"),
    ("csv", b",".join([b"inf"] + [b"0.5"] * 63 + [b"2"]), "non-finite: field 'pixels' contains Inf"),
    ("csv", good("csv") + b"\n" + good("csv"), "csv: payload has 2 lines, expected 1"),
    ("csv", b"  \n", "csv: line is blank"),
    ("tfexample", b"\xff\xff\xff", "tfexample: cannot parse (truncated varint at byte 3)"),
    ("tfexample", good("tfexample")[:-3], "tfexample: cannot parse (Example: field 1 claims"),
    ("tfexample", encode_example({"pixels": np.zeros(64, np.float32)}), "tfexample: missing feature 'digit'"),
    ("tfexample", encode_example({"pixels": np.zeros(64, np.int64), "digit": np.array([1])}),
     "dtype: field 'pixels' is int64_list, expected float_list (dtype float32)"),
    ("tfexample", encode_example({"pixels": [b"x"], "digit": np.array([1])}),
     "dtype: field 'pixels' is bytes_list, expected numbers (dtype float32)"),
    ("tfexample", encode_example({"pixels": np.zeros(65, np.float32), "digit": np.array([1])}),
     "shape: field 'pixels' has 65 values, expected 64 (shape [64])"),
    ("tfexample", encode_example({"pixels": np.zeros(64, np.float32), "digit": np.array([99])}),
     "label: field 'digit' value 99 is out of range 0..9 (numClasses 10)"),
]


@pytest.mark.parametrize(("fmt", "payload", "reason"), CORPUS, ids=[f"{f}:{r.split(':')[0]}:{i}"
                                                                    for i, (f, _, r) in enumerate(CORPUS)])
def test_each_malformed_payload_gets_its_reason_and_the_good_ones_decode(fmt: Format, payload: bytes,
                                                                        reason: str) -> None:
    payloads = [good(fmt, label=1), payload, good(fmt, label=2)]
    batch = Decoder(digits(fmt), num_classes=10).decode(payloads)
    assert len(batch.rejects) == 1
    index, got = batch.rejects[0]
    assert index == 1 and got.startswith(reason), got
    assert batch.valid_index.tolist() == [0, 2] and batch.labels.tolist() == [1, 2]
    assert np.all(batch.features["pixels"] == 0.5)


def test_corpus_covers_many_kinds() -> None:
    kinds = {reason.split(":")[0] + ":" + reason.split(":")[1].split()[0] for _, _, reason in CORPUS}
    assert len(CORPUS) >= 30 and len(kinds) >= 10


def test_values_that_do_not_fit_narrow_dtypes() -> None:
    data = DataConfig(format="json", features=(FieldSpec(name="b", dtype="int8"), FieldSpec(name="f", dtype="bool"),
                                               FieldSpec(name="h", dtype="float16")),
                      label=FieldSpec(name="y", dtype="float32"))
    payloads = [as_json(b=300, f=True, h=1.0, y=0.5), as_json(b=1, f=2, h=1.0, y=0.5),
                as_json(b=1, f=1, h=1e6, y=0.5), as_json(b=-128, f=False, h=-2.0, y=0.5)]
    batch = Decoder(data).decode(payloads)
    assert batch.rejects == [
        (0, "range: field 'b' value 300 is out of range for int8 (-128..127)"),
        (1, "dtype: field 'f' value 2 is not bool (true/false or 0/1)"),
        (2, "range: field 'h' value 1000000 is out of range for float16 (±65504)"),
    ]
    assert batch.features["b"].tolist() == [-128] and batch.features["f"].tolist() == [False]


def test_raw_bool_bytes_must_be_zero_or_one() -> None:
    data = DataConfig(format="raw", features=(FieldSpec(name="m", dtype="bool", shape=(2,)),),
                      label=FieldSpec(name="y", dtype="uint8"))
    batch = Decoder(data).decode([b"\x01\x00\x07", b"\x02\x01\x07"])
    assert batch.rejects == [(1, "dtype: field 'm' value 2 is not bool (true/false or 0/1)")]
    assert batch.features["m"].tolist() == [[True, False]] and batch.labels.tolist() == [7]


def test_binary_labels_must_be_zero_or_one() -> None:
    data = DataConfig(format="csv", features=(FieldSpec(name="x", dtype="float32"),),
                      label=FieldSpec(name="y", dtype="float32"))
    batch = Decoder(data, binary=True).decode([b"1.0,1", b"2.0,0.5", b"3.0,0\n"])
    assert batch.rejects == [(1, "label: field 'y' value 0.5 is not 0 or 1 (task binary)")]
    assert batch.valid_index.tolist() == [0, 2] and batch.labels.tolist() == [1.0, 0.0]


def test_json_accepts_nested_or_flat_lists_and_ignores_extra_keys() -> None:
    data = DataConfig(format="json", features=(FieldSpec(name="img", dtype="uint8", shape=(2, 2)),),
                      label=FieldSpec(name="y", dtype="int64"))
    batch = Decoder(data).decode([as_json(img=[[1, 2], [3, 4]], y=0, id="m-1"), as_json(img=[1, 2, 3, 4], y=1)])
    assert batch.rejects == [] and batch.features["img"].tolist() == [[[1, 2], [3, 4]], [[1, 2], [3, 4]]]
    bad = Decoder(data).decode([as_json(img=[[1, 2], [3, 4.5]], y=0), as_json(img=[1, 2, 3, 256], y=0)])
    assert bad.rejects == [(0, "dtype: field 'img' value 4.5 is not uint8"),
                           (1, "range: field 'img' value 256 is out of range for uint8 (0..255)")]


def test_csv_other_delimiter() -> None:
    data = DataConfig(format="csv", features=(FieldSpec(name="x", dtype="float64", shape=(2,)),),
                      label=FieldSpec(name="y", dtype="int8"))
    data = DataConfig(format="csv", features=data.features, label=data.label,
                      csv=type(data.csv)(delimiter="\t"))
    payloads = encode_batch(data, {"x": np.array([[0.1, 1e-300], [2.0, -3.0]])}, np.array([1, -2]))
    assert payloads[0] == b"0.1\t1e-300\t1"
    batch = Decoder(data).decode([*payloads, b"1,2,3"])
    assert batch.features["x"].tolist() == [[0.1, 1e-300], [2.0, -3.0]] and batch.labels.tolist() == [1, -2]
    assert batch.rejects == [(2, "csv: 1 columns, expected 3")]


def test_arrays_survive_the_next_decode() -> None:
    """Raw decoding reuses a scratch buffer; what an earlier call returned must not change."""
    data = digits("raw")
    decoder = Decoder(data)
    first = decoder.decode([good("raw", label=1, value=1.0)])  # a single record: the case a view would leak
    second = decoder.decode([good("raw", label=2, value=2.0)])  # same size: the scratch buffer is reused
    decoder.decode([good("raw", label=3, value=3.0)] * 3)
    assert first.labels.tolist() == [1] and np.all(first.features["pixels"] == 1.0)
    assert second.labels.tolist() == [2] and np.all(second.features["pixels"] == 2.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_garbage_never_raises(fmt: Format) -> None:
    rng = random.Random(7)
    base = [good(fmt)]
    payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300))) for _ in range(60)]
    payloads += [bytearray_flip(base[0], rng) for _ in range(60)]
    batch = Decoder(digits(fmt), num_classes=10).decode(payloads)
    assert len(batch) + len(batch.rejects) == len(payloads)
    assert all(reason.split(":")[0] in {"empty", "json", "csv", "raw", "tfexample", "shape", "dtype", "range",
                                        "non-finite", "label"} for _, reason in batch.rejects)
    assert np.isfinite(batch.features["pixels"]).all()
    assert ((batch.labels >= 0) & (batch.labels < 10)).all()


def bytearray_flip(payload: bytes, rng: random.Random) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.getrandbits(8)
    return bytes(data)


def test_from_config_checks_labels_for_the_task() -> None:
    from pulsetrain.config import load_config
    from tests.unit.test_worker_config import DIGITS

    decoder = Decoder.from_config(load_config(DIGITS))
    assert decoder.num_classes == 10 and not decoder.binary
    assert decoder.decode([good("raw", label=10)]).rejects[0][1].startswith("label: field 'digit' value 10")


def test_encoder_refuses_values_that_do_not_fit() -> None:
    data = digits("raw")
    with pytest.raises(ValueError, match=r"field 'pixels': got shape \[2, 63\], expected \[n, 64\]"):
        encode_batch(data, {"pixels": np.zeros((2, 63))}, np.array([1, 2]))
    with pytest.raises(ValueError, match="field 'digit': values do not fit dtype int64 exactly"):
        encode_batch(data, {"pixels": np.zeros((1, 64))}, np.array([1.5]))
    with pytest.raises(ValueError, match="feature 'pixels' is missing"):
        encode_batch(data, {}, np.array([1]))
    with pytest.raises(ValueError, match="field 'digit' has 2 records, the fields before it have 1"):
        encode_batch(data, {"pixels": np.zeros((1, 64))}, np.array([1, 2]))
