"""The predictor's features-only decoding: inputs may carry the label or not; a label present is dropped unchecked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pulsetrain.config_model import CsvConfig, DataConfig, FieldSpec, Format
from pulsetrain.decode import Decoder
from pulsetrain.encode import encode_batch
from pulsetrain.tfexample import encode_example
from tests.unit.test_decode import FORMATS, mixed, mixed_rows


def features_only_payloads(data: DataConfig, features: dict[str, np.ndarray]) -> list[bytes]:
    """The features alone, in `data.format`: what a client that knows no label sends."""
    n = len(next(iter(features.values())))
    if data.format == "raw":
        records = np.empty(n, dtype=np.dtype([(f.name, np.dtype("u1") if f.dtype == "bool" else
                                              np.dtype(f.dtype).newbyteorder("<"), f.shape) for f in data.features]))
        for f in data.features:
            records[f.name] = features[f.name]
        return [r.tobytes() for r in records]
    if data.format == "csv":
        return [",".join(repr(v) for f in data.features
                         for v in np.asarray(features[f.name][i], dtype=np.float64).reshape(-1).tolist()).encode()
                for i in range(n)]
    if data.format == "json":
        return [json.dumps({f.name: features[f.name][i].tolist() for f in data.features}).encode() for i in range(n)]
    return [encode_example({f.name: features[f.name][i] for f in data.features}) for i in range(n)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_with_and_without_labels_decode_to_the_same_features(fmt: Format) -> None:
    data = mixed(fmt)
    features, labels = mixed_rows(6)
    if fmt == "tfexample":  # float_list carries float32 only: leave out the float64 field (as test_decode does)
        data = DataConfig(format=fmt, features=data.features[:3] + data.features[4:], label=data.label)
        del features["wide"]
    labelled = encode_batch(data, features, labels)
    bare = features_only_payloads(data, features)
    payloads = [labelled[0], bare[1], labelled[2], bare[3], labelled[4], bare[5]]
    batch = Decoder(data, features_only=True).decode(payloads)
    assert batch.rejects == [] and batch.valid_index.tolist() == list(range(6))
    for name, values in features.items():
        assert batch.features[name].dtype == values.dtype and np.array_equal(batch.features[name], values), name
    assert batch.labels.shape == (0,)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_label_present_is_not_checked(fmt: Format) -> None:
    data = DataConfig(format=fmt, features=(FieldSpec(name="pixels", dtype="float32", shape=(4,)),),
                      label=FieldSpec(name="digit", dtype="int64"))
    payloads = encode_batch(data, {"pixels": np.ones((1, 4), np.float32)}, np.array([12]))
    assert Decoder(data, num_classes=10).decode(payloads).rejects[0][1].startswith("label:")  # the trainer's view
    assert Decoder(data, num_classes=10, features_only=True).decode(payloads).rejects == []


def test_raw_length_reason_names_both_sizes() -> None:
    data = mixed("raw")
    batch = Decoder(data, features_only=True).decode([b"\x00" * 5, b""])
    record = sum(np.dtype(f.dtype).itemsize * f.size for f in data.features)
    assert batch.rejects == [
        (0, f"raw: payload is 5 bytes, expected {record} (features) or {record + 4} (features and label)"),
        (1, "empty: payload is empty"),
    ]


@pytest.mark.parametrize(("payload", "kind"), [
    (b'{"pixels": [1, 2]}', "shape"),
    (b'{"digit": 3}', "json"),
    (b'{"pixels": [NaN, 1, 1, 1]}', "non-finite"),
    (b"[1, 2, 3, 4]", "json"),
])
def test_json_feature_faults_still_reject(payload: bytes, kind: str) -> None:
    data = DataConfig(format="json", features=(FieldSpec(name="pixels", dtype="float32", shape=(4,)),),
                      label=FieldSpec(name="digit", dtype="int64"))
    (reject,) = Decoder(data, features_only=True).decode([payload]).rejects
    assert reject[1].split(":")[0] == kind, reject


def test_csv_columns_must_be_features_or_features_and_label() -> None:
    data = DataConfig(format="csv", features=(FieldSpec(name="x", dtype="float32", shape=(3,)),),
                      label=FieldSpec(name="y", dtype="float32", shape=(2,)), csv=CsvConfig(delimiter=";"))
    decoder = Decoder(data, features_only=True)
    batch = decoder.decode([b"1;2;3", b"1;2;3;4;5\r\n", b"1;2;3;4", b"1;2;x;4;5"])
    assert batch.features["x"].tolist() == [[1, 2, 3], [1, 2, 3]]
    assert batch.rejects == [(2, "csv: 4 columns, expected 3"),
                             (3, "csv: column 3 (field 'x') value 'x' is not a number")]
