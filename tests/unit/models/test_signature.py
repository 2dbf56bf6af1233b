"""Signature inference for every input kind, and its dict form."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from gyre.errors import InvalidArgument
from gyre.models import Signature, infer_signature
from gyre.models.signature import ColumnSpec


def columns(sig: Signature) -> list[tuple[str, str]]:
    return [(c.name, c.dtype) for c in sig.inputs]


def test_dataframe():
    frame = pd.DataFrame(
        {
            "amount": [1.5, 2.0],
            "count": np.array([1, 2], dtype=np.int64),
            "flag": [True, False],
            "country": ["NL", "FR"],
            "device": pd.Categorical(["ios", "web"]),
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]).astype("datetime64[ns]"),
            "maybe": pd.array([1, None], dtype="Int64"),
            3: [0.1, 0.2],
        }
    )
    assert columns(infer_signature(frame)) == [
        ("amount", "float64"),
        ("count", "int64"),
        ("flag", "bool"),
        ("country", "string"),
        ("device", "category"),
        ("ts", "datetime64[ns]"),
        ("maybe", "int64"),
        ("3", "float64"),
    ]


def test_dict_of_columns():
    sig = infer_signature(
        {
            "a": [1.0, 2.5],
            "b": np.array([1, 2], dtype=np.int32),
            "c": ["x", None],
            "d": [True, False],
            "e": [1, 2.5],
            "f": [1, None],
            "g": [datetime(2024, 1, 1), datetime(2024, 1, 2)],
        }
    )
    assert columns(sig) == [
        ("a", "float64"),
        ("b", "int32"),
        ("c", "string"),
        ("d", "bool"),
        ("e", "float64"),
        ("f", "int64"),
        ("g", "datetime64[ns]"),
    ]


def test_list_of_rows_keeps_first_seen_column_order():
    rows = [{"b": 1, "a": "x"}, {"a": "y", "c": 0.5, "b": 2}]
    assert columns(infer_signature(rows)) == [("b", "int64"), ("a", "string"), ("c", "float64")]


def test_numpy_array_columns_are_f0_to_fn():
    assert columns(infer_signature(np.zeros((3, 3), dtype=np.float32))) == [
        ("f0", "float32"),
        ("f1", "float32"),
        ("f2", "float32"),
    ]
    assert columns(infer_signature(np.array([["a", "b"]]))) == [("f0", "string"), ("f1", "string")]


def test_outputs():
    x = np.zeros((2, 2))
    assert infer_signature(x, np.array([0.1, 0.2])).outputs == [ColumnSpec("prediction", "float64")]
    assert [c.name for c in infer_signature(x, np.zeros((2, 3))).outputs] == [
        "prediction_0",
        "prediction_1",
        "prediction_2",
    ]
    assert infer_signature(x, pd.Series([1, 2], name="score")).outputs == [ColumnSpec("score", "int64")]
    assert infer_signature(x, ["yes", "no"]).outputs == [ColumnSpec("prediction", "string")]
    assert infer_signature(x).outputs == []


def test_dict_form_round_trips():
    sig = infer_signature({"a": [1.0], "s": ["x"]}, np.array([0.5]))
    as_dict = sig.to_dict()

    assert as_dict == {
        "inputs": [{"name": "a", "dtype": "float64"}, {"name": "s", "dtype": "string"}],
        "outputs": [{"name": "prediction", "dtype": "float64"}],
    }
    assert Signature.from_dict(as_dict) == sig
    assert Signature.from_dict({"inputs": [{"name": "a", "dtype": "int64"}]}).outputs == []


@pytest.mark.parametrize(
    ("example", "message"),
    [
        (np.zeros(3), "must be 2-D"),
        ({"a": [1, 2], "b": [1]}, "differ in length"),
        ({"a": 1.0}, "not a list or array"),
        ({}, "no columns"),
        ([], "empty list"),
        ([1, 2], "row dicts"),
        ("a,b", "Cannot read columns from str"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate column names"),
    ],
)
def test_bad_examples_are_refused(example, message):
    with pytest.raises(InvalidArgument, match=message):
        infer_signature(example)


@pytest.mark.parametrize("bad", [{"outputs": []}, {"inputs": [{"name": "a"}]}, ["inputs"]])
def test_malformed_dicts_are_refused(bad):
    with pytest.raises(InvalidArgument, match="signature"):
        Signature.from_dict(bad)


def test_inference_without_a_dataframe_does_not_import_pandas():
    code = (
        "import sys, numpy as np\n"
        "from gyre.models.signature import infer_signature\n"
        "infer_signature({'a': [1.0]}); infer_signature([{'a': 1}]); infer_signature(np.zeros((1, 2)))\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
