"""InputPlan: requests checked against the fields an endpoint reads, one message per field."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gyre.serving.errors import InvalidInput, MalformedRequest
from gyre.serving.inputs import ANY, BOOL, INTEGER, KEY, NUMBER, STRING, InputField, InputPlan, kind_of_dtype

FIELDS = [
    InputField("amount", NUMBER, True),
    InputField("count", INTEGER, True),
    InputField("weekend", BOOL, True),
    InputField("country", STRING, False),
    InputField("user_id", KEY, False),
    InputField("note", ANY, False),
]
GOOD = {"amount": 12.5, "count": 3, "weekend": True, "country": "FR", "user_id": 42, "note": None}


def plan(extra: str = "reject") -> InputPlan:
    return InputPlan(FIELDS, extra)


def fields_of(exc: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return exc.value.fields


def test_rows_become_a_float_matrix_and_lists() -> None:
    prepared = plan().from_rows([GOOD, {**GOOD, "amount": 1, "count": 4.0, "weekend": False}])
    assert prepared.n == 2
    np.testing.assert_array_equal(prepared.num, [[12.5, 3, 1], [1, 4, 0]])
    assert prepared.num.dtype == np.float64
    assert prepared.obj == [["FR", "FR"], [42, 42], [None, None]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "expected a number, got 'abc'"),
        (True, "expected a number, got true"),
        (None, "expected a number, got null"),
        (float("nan"), "expected a finite number, got NaN"),
        (float("inf"), "expected a finite number, got Infinity"),
        ([1.0], "expected a number, got [1.0]"),
    ],
)
def test_a_wrong_amount_is_named(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        plan().from_rows([{**GOOD, "amount": value}])
    assert fields_of(exc) == {"amount": message}
    assert exc.value.status_code == 422 and exc.value.code == "invalid_input"
    assert exc.value.to_dict()["fields"] == {"amount": message}


def test_every_field_kind_is_checked_and_all_problems_are_listed() -> None:
    bad = {"amount": 1.0, "count": 2.5, "weekend": 1, "country": 7, "user_id": 1.5, "colour": "red"}
    with pytest.raises(InvalidInput) as exc:
        plan().from_rows([bad])
    assert fields_of(exc) == {
        "count": "expected an integer, got 2.5",
        "weekend": "expected true or false, got 1",
        "country": "expected a string, got 7",
        "user_id": "expected an entity key (a string or an integer), got 1.5",
        "note": "missing (expected a value)",
        "colour": "not a field of this endpoint; it reads: amount, count, weekend, country, user_id, note",
    }
    assert "colour: not a field" in exc.value.message


def test_many_rows_say_which_row_and_how_many_more() -> None:
    rows = [GOOD, {**GOOD, "amount": "x"}, {**GOOD, "amount": "y"}, {**GOOD, "amount": "z"}]
    with pytest.raises(InvalidInput) as exc:
        plan().from_rows(rows)
    assert fields_of(exc) == {"amount": "row 1: expected a number, got 'x' (and 2 more rows)"}


def test_extra_fields_can_be_ignored() -> None:
    prepared = plan("ignore").from_rows([{**GOOD, "colour": "red"}])
    assert prepared.n == 1
    with pytest.raises(InvalidInput, match="colour"):
        plan("reject").from_rows([{**GOOD, "colour": "red"}])


def test_a_row_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedRequest, match=r"Row 1 is an array, not an object of field values"):
        plan().from_rows([GOOD, [1, 2]])


def test_columns_from_tensors_are_checked_the_same_way() -> None:
    columns = {
        "amount": np.array([1.0, 2.0], dtype=np.float32),
        "count": np.array([1, 2], dtype=np.int64),
        "weekend": np.array([True, False]),
        "country": [b"FR", "DE"],
        "user_id": np.array([1, 2]),
        "note": ["a", "b"],
    }
    prepared = plan().from_columns(columns, 2)
    np.testing.assert_array_equal(prepared.num, [[1, 1, 1], [2, 2, 0]])
    assert prepared.obj == [["FR", "DE"], [1, 2], ["a", "b"]]

    with pytest.raises(InvalidInput) as exc:
        plan().from_columns(
            {**columns, "amount": np.array([1.0, np.nan]), "weekend": np.array([1, 0]), "count": [1, "x"]}, 2
        )
    assert fields_of(exc) == {
        "amount": "row 1: expected a finite number, got NaN",
        "weekend": "row 0: expected true or false, got a int64 tensor",
        "count": "row 1: expected an integer, got 'x'",
    }
    with pytest.raises(InvalidInput) as exc:
        plan().from_columns({"amount": [1.0]}, 1)
    assert fields_of(exc)["user_id"] == "missing (expected an entity key (a string or an integer))"
    with pytest.raises(MalformedRequest, match="has 1 values where the others have 2"):
        plan().from_columns({**columns, "note": ["a"]}, 2)


def test_a_numeric_matrix_in_field_order() -> None:
    numbers = InputPlan([InputField(n, NUMBER, True) for n in ("a", "b")])
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(numbers.from_matrix(x).num, x)
    with pytest.raises(InvalidInput) as exc:
        numbers.from_matrix(np.array([[1.0, 2.0], [3.0, np.inf]]))
    assert exc.value.fields == {"b": "row 1: expected a finite number, got Infinity"}
    with pytest.raises(
        MalformedRequest, match=r"shape \[rows, 2\], one column per field in this order: a, b"
    ):
        numbers.from_matrix(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [
        ("float64", NUMBER),
        ("float32", NUMBER),
        ("int64", INTEGER),
        ("uint8", INTEGER),
        ("bool", BOOL),
        ("string", STRING),
        ("category", STRING),
        ("object", STRING),
    ],
)
def test_kinds_of_signature_dtypes(dtype: str, kind: str) -> None:
    assert kind_of_dtype(dtype) == kind


_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from([float("nan"), float("inf"), True, None, "1.5", [], {}]),
)


@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "extra"]), _VALUES, min_size=1, max_size=4),
        min_size=1,
        max_size=5,
    ),
    reject=st.booleans(),
)
@hsettings(max_examples=300, deadline=None)
def test_rows_of_numbers_read_fast_as_the_checked_path_does(
    rows: list[dict[str, object]], reject: bool
) -> None:
    """Plans of plain numbers read rows in one pass; whatever it takes or leaves, the answer
    (matrix or error message) is the one the value-by-value path gives."""
    fields = [InputField(name, NUMBER, True) for name in ("a", "b", "c")]
    plan = InputPlan(fields, "reject" if reject else "ignore")
    checked = InputPlan(fields, "reject" if reject else "ignore")
    checked._getter = None  # the value-by-value path alone

    def outcome(p: InputPlan) -> object:
        try:
            prepared = p.from_rows(rows)
        except (InvalidInput, MalformedRequest) as err:
            return type(err), str(err)
        assert prepared.num.dtype == np.float64 and prepared.obj == []
        return prepared.num.tobytes(), prepared.num.shape

    assert outcome(plan) == outcome(checked)
