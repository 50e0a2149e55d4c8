"""Answer messages: one JSON object per input with the prediction and model version; properties to match inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pulsetrain.predict_io import (
    INPUT_ID_PROPERTY,
    INPUT_KEY_PROPERTY,
    MODEL_VERSION_PROPERTY,
    answer_properties,
    encode_answers,
    prediction_records,
)


def test_classification() -> None:
    outputs: dict[str, np.ndarray] = {"class": np.array([2, 0], np.int64),
                                      "probabilities": np.array([[0.1, 0.2, 0.7], [0.9, 0.05, 0.05]], np.float32)}
    assert prediction_records(outputs) == [{"class": 2, "probabilities": [0.1, 0.2, 0.7]},
                                           {"class": 0, "probabilities": [0.9, 0.05, 0.05]}]


def test_binary_and_regression() -> None:
    binary = {"class": np.array([1, 0]), "probability": np.array([0.8123456789, 0.1], np.float32)}
    assert prediction_records(binary) == [{"class": 1, "probability": 0.812346}, {"class": 0, "probability": 0.1}]
    assert prediction_records({"prediction": np.array([1.5, -2.25], np.float32)}) == [{"value": 1.5},
                                                                                        {"value": -2.25}]


def test_other_signatures_give_every_output_by_name() -> None:
    outputs = {"score": np.array([[1.0, 2.0], [3.0, 4.5]]), "ok": np.array([True, False])}
    assert prediction_records(outputs) == [{"ok": True, "score": [1.0, 2.0]}, {"ok": False, "score": [3.0, 4.5]}]


def test_non_finite_values_become_null() -> None:
    outputs = {"class": np.array([1]), "probabilities": np.array([[np.nan, np.inf]], np.float32)}
    assert prediction_records(outputs) == [{"class": 1, "probabilities": [None, None]}]
    assert prediction_records({"prediction": np.array([np.nan, 1.0])}) == [{"value": None}, {"value": 1.0}]


def test_encode_answers() -> None:
    outputs = {"class": np.array([3, 1]), "probabilities": np.eye(4, dtype=np.float32)[[3, 1]]}
    payloads = encode_answers(outputs, 7, ["(1,2,-1,-1)", "(1,3,-1,-1)"])
    first = json.loads(payloads[0])
    assert first == {"inputMessageId": "(1,2,-1,-1)", "modelVersion": 7,
                     "prediction": {"class": 3, "probabilities": [0.0, 0.0, 0.0, 1.0]}}
    assert b" " not in payloads[1] and json.loads(payloads[1])["prediction"]["class"] == 1
    with pytest.raises(ValueError, match="the model returned 2 rows for 3 inputs"):
        encode_answers(outputs, 7, ["a", "b", "c"])


def test_answer_properties() -> None:
    assert answer_properties("(5,6,-1,0)", 12) == {INPUT_ID_PROPERTY: "(5,6,-1,0)", MODEL_VERSION_PROPERTY: "12"}
    assert answer_properties("(5,6,-1,0)", 12, "user-7")[INPUT_KEY_PROPERTY] == "user-7"
    assert (INPUT_ID_PROPERTY, MODEL_VERSION_PROPERTY) == ("pulsetrain.input-message-id", "pulsetrain.model-version")
