"""The wire formats: Gyre JSON, MLflow scoring and Open Inference Protocol v2 (JSON and binary)."""

from __future__ import annotations

import json
import struct

import numpy as np
import orjson
import pytest

from gyre.serving import protocols
from gyre.serving.errors import InvalidInput, MalformedRequest, RequestTooLarge
from gyre.serving.inputs import KEY, NUMBER, InputField, InputPlan

PLAN = InputPlan(
    [InputField("a", NUMBER, True), InputField("b", NUMBER, True), InputField("user", KEY, False)]
)


def test_gyre_json() -> None:
    one = protocols.parse_gyre(PLAN, {"row": {"a": 1, "b": 2, "user": "u1"}})
    assert one.n == 1 and one.num.tolist() == [[1, 2]] and one.obj == [["u1"]]
    many = protocols.parse_gyre(PLAN, {"rows": [{"a": 1, "b": 2, "user": 1}] * 3})
    assert many.n == 3
    for bad in ({"rows": {"a": 1}}, [{"a": 1}], {"rows": [], "row": {}}, {"data": []}):
        with pytest.raises(MalformedRequest, match=r'Send \{"rows": \[\{"field": 1.0\}\]\}'):
            protocols.parse_gyre(PLAN, bad)
    with pytest.raises(InvalidInput, match="no rows"):
        protocols.parse_gyre(PLAN, {"rows": []})
    with pytest.raises(RequestTooLarge, match="10,001 rows in one request; send at most 10,000"):
        protocols.parse_gyre(PLAN, {"rows": [{}] * 10_001})


def test_json_parsing_reads_nan_so_the_field_can_be_named() -> None:
    data = protocols.parse_json(b'{"row": {"a": NaN, "b": 1, "user": 1}}', "{}")
    with pytest.raises(InvalidInput) as exc:
        protocols.parse_gyre(PLAN, data)
    assert exc.value.fields == {"a": "expected a finite number, got NaN"}
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        protocols.parse_json(b'{"row": ', "{}")
    with pytest.raises(MalformedRequest, match="has no body"):
        protocols.parse_json(b"", "{}")


def test_mlflow_formats_give_the_same_rows() -> None:
    expected = [[1.0, 2.0], [3.0, 4.0]]
    records = [{"a": 1, "b": 2, "user": "x"}, {"a": 3, "b": 4, "user": "y"}]
    payloads = [
        {"dataframe_split": {"columns": ["user", "b", "a"], "data": [["x", 2, 1], ["y", 4, 3]]}},
        {"dataframe_split": {"index": [0, 1], "data": [[1, 2, "x"], [3, 4, "y"]]}},  # field order
        {"dataframe_records": records},
        {"instances": records},
        {"instances": [[1, 2, "x"], [3, 4, "y"]]},
        {"inputs": {"a": [1, 3], "b": [2, 4], "user": ["x", "y"]}},
        {"inputs": records, "params": {"anything": 1}},
    ]
    for payload in payloads:
        prepared = protocols.parse_mlflow(PLAN, payload)
        assert prepared.num.tolist() == expected, payload
        assert prepared.obj == [["x", "y"]]
    single = protocols.parse_mlflow(PLAN, {"inputs": {"a": 1, "b": 2, "user": "x"}})
    assert single.n == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "Send a JSON object with one of dataframe_split"),
        ({"instances": [], "inputs": []}, "Send exactly one of"),
        ({"dataframe_split": {"columns": ["a"]}}, "dataframe_split is an object with columns and data"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, r"row 0 must be an array of 2 values"),
        ({"dataframe_records": {"a": 1}}, "dataframe_records is an array of row objects"),
        ({"instances": 3}, "instances must be an array of rows or an object of columns"),
    ],
)
def test_mlflow_malformed(payload: object, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message):
        protocols.parse_mlflow(PLAN, payload)


_BINARY_HEADER = (
    b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}]}'
)


def _infer(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def test_oip_named_tensors_one_matrix_and_nested_data() -> None:
    named = protocols.parse_infer(
        PLAN,
        _infer(
            [
                {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 3]},
                {"name": "b", "shape": [2, 1], "datatype": "FP32", "data": [[2], [4]]},
                {"name": "user", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
            ],
            id="r1",
        ),
        None,
    )
    assert named.prepared.num.tolist() == [[1, 2], [3, 4]] and named.id == "r1"
    assert named.prepared.obj == [["x", "y"]] and not named.binary_output

    numbers = InputPlan([InputField("a", NUMBER, True), InputField("b", NUMBER, True)])
    matrix = protocols.parse_infer(
        numbers,
        _infer([{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]),
        None,
    )
    assert matrix.prepared.num.tolist() == [[1, 2], [3, 4]]


def test_oip_binary_tensors_in_and_out() -> None:
    numbers = InputPlan([InputField("a", NUMBER, True), InputField("b", NUMBER, True)])
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    request = protocols.parse_infer(numbers, header + x.tobytes(), len(header))
    assert request.prepared.num.tolist() == x.tolist() and request.binary_output

    body, length = protocols.infer_response("fraud", 3, None, [0.25, 0.75], binary=True)
    assert length is not None
    meta = json.loads(body[:length])
    assert meta["model_version"] == "3"
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}
    ]
    assert np.frombuffer(body[length:], dtype="<f8").tolist() == [0.25, 0.75]

    labels, length = protocols.infer_response("fraud", 3, "r", ["no", "yes"], binary=True)
    assert (
        length is not None and labels[length:] == struct.pack("<I", 2) + b"no" + struct.pack("<I", 3) + b"yes"
    )
    text, length = protocols.infer_response("fraud", 3, "r", [[0.1, 0.9]], binary=False)
    assert length is None and json.loads(text)["outputs"][0] == {
        "name": "predict", "datatype": "FP64", "shape": [1, 2], "data": [0.1, 0.9]
    }  # fmt: skip

    strings = struct.pack("<I", 1) + b"x" + struct.pack("<I", 2) + b"yz"
    user_plan = InputPlan([InputField("user", KEY, False)])
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "user",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(strings)},
                }
            ]
        }
    )
    assert protocols.parse_infer(user_plan, header + strings, len(header)).prepared.obj == [["x", "yz"]]


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"inputs": []}', None, "non-empty array of tensors"),
        (_infer([{"name": "a", "shape": [2], "datatype": "FP128", "data": [1, 2]}]), None, "FP128"),
        (
            _infer([{"name": "a", "shape": [3], "datatype": "FP64", "data": [1, 2]}]),
            None,
            r"2 values for shape \[3\]",
        ),
        (_infer([{"name": "a", "shape": [1, 2, 3], "datatype": "FP64", "data": []}]), None, "shape must be"),
        (
            _infer(
                [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]}], outputs=[{"name": "proba"}]
            ),
            None,
            "one output, 'predict'",
        ),
        (
            _infer(
                [
                    {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                    {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]},
                ]
            ),
            None,
            r"differ in rows: \[1, 2\]",
        ),
        (_BINARY_HEADER + b"1234", len(_BINARY_HEADER), "binary_data_size 8 is past the body's end"),
        (b"{}", 50, "Inference-Header-Content-Length is 50"),
    ],
)
def test_oip_malformed(body: bytes, length: int | None, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message):
        protocols.parse_infer(PLAN, body, length)
