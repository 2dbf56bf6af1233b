"""The request and response formats prediction clients speak, as pure functions.

* Gyre JSON: ``{"rows": [{...}, ...]}`` or ``{"row": {...}}``.
* MLflow scoring (``/invocations``): ``dataframe_split``, ``dataframe_records``, ``instances``
  and ``inputs``, answered with ``{"predictions": [...]}``.
* Open Inference Protocol v2 (KServe, Triton, MLServer): named tensors (one per field) or one
  2-D tensor whose columns are the fields in order; JSON ``data`` or the binary tensor
  extension (``Inference-Header-Content-Length``), which Triton's clients use by default.

Each parser returns a :class:`~gyre.serving.inputs.Prepared` through the endpoint's
:class:`~gyre.serving.inputs.InputPlan`, so every protocol is checked the same way.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import orjson

from gyre.serving.errors import InvalidInput, MalformedRequest, RequestTooLarge
from gyre.serving.inputs import InputPlan, Prepared

MAX_ROWS = 10_000
OUTPUT_NAME = "predict"

# OIP datatypes -> numpy dtypes (little-endian, as the binary extension sends them).
_NUMPY_OF = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*_NUMPY_OF, "BYTES")
# Field kind -> the datatype metadata advertises for it.
DATATYPE_OF_KIND = {
    "number": "FP64",
    "integer": "INT64",
    "bool": "BOOL",
    "string": "BYTES",
    "key": "BYTES",
    "any": "BYTES",
}


def parse_json(body: bytes, example: str) -> Any:
    """The body as JSON. NaN and Infinity (which JSON lacks but Python's ``json`` writes) are
    read, so the input checks can name the field that holds them."""
    if not body:
        raise MalformedRequest(f"The request has no body; send JSON like {example}.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # the slow parser knows NaN, Infinity and integers beyond 64 bits
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedRequest(f"The body is not valid JSON ({exc}); send JSON like {example}.") from None


def check_rows(n: int) -> None:
    if n > MAX_ROWS:
        raise RequestTooLarge(
            f"{n:,} rows in one request; send at most {MAX_ROWS:,} per request (split the rows "
            "over several requests)."
        )
    if n == 0:
        raise InvalidInput("The request has no rows; send at least one.", {})


# -- Gyre JSON ------------------------------------------------------------------------------

GYRE_EXAMPLE = '{"rows": [{"field": 1.0}]} or {"row": {"field": 1.0}}'


def parse_gyre(plan: InputPlan, data: Any) -> Prepared:
    """``{"rows": [...]}`` or ``{"row": {...}}``."""
    if type(data) is dict and len(data) == 1:
        rows = data.get("rows")
        if type(rows) is list:
            check_rows(len(rows))
            return plan.from_rows(rows)
        row = data.get("row")
        if type(row) is dict:
            return plan.from_rows([row])
    raise MalformedRequest(f"Send {GYRE_EXAMPLE}, not {_describe(data)}.")


# -- MLflow scoring ---------------------------------------------------------------------------

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MLFLOW_EXAMPLE = '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}'


def parse_mlflow(plan: InputPlan, data: Any) -> Prepared:
    """MLflow's ``/invocations`` JSON: one of :data:`MLFLOW_FORMATS` (``params`` is ignored)."""
    if type(data) is not dict:
        raise MalformedRequest(
            f"Send a JSON object with one of {', '.join(MLFLOW_FORMATS)}, like {MLFLOW_EXAMPLE}."
        )
    given = [k for k in MLFLOW_FORMATS if k in data]
    unknown = sorted(set(data) - set(MLFLOW_FORMATS) - {"params"})
    if len(given) != 1 or unknown:
        raise MalformedRequest(
            f"Send exactly one of {', '.join(MLFLOW_FORMATS)} (and optionally params); got "
            f"{', '.join(sorted(data)) or 'an empty object'}."
        )
    fmt = given[0]
    value = data[fmt]
    if fmt == "dataframe_split":
        if type(value) is not dict or type(value.get("data")) is not list:
            raise MalformedRequest(
                f"dataframe_split is an object with columns and data, like {MLFLOW_EXAMPLE}."
            )
        columns = value.get("columns", plan.names)
        return _positional(plan, value["data"], columns, "dataframe_split")
    if fmt == "dataframe_records":
        if type(value) is not list:
            raise MalformedRequest('dataframe_records is an array of row objects, like [{"a": 1, "b": 2}].')
        check_rows(len(value))
        return plan.from_rows(value)
    # instances / inputs: rows, lists in field order, or columns
    if type(value) is dict:
        if value and all(type(v) is list for v in value.values()):
            n = len(next(iter(value.values())))
            check_rows(n)
            return plan.from_columns(value, n)
        return plan.from_rows([value])
    if type(value) is list:
        check_rows(len(value))
        if value and all(type(v) is list for v in value):
            return _positional(plan, value, plan.names, fmt)
        return plan.from_rows(value)
    raise MalformedRequest(f"{fmt} must be an array of rows or an object of columns, not {_describe(value)}.")


def _positional(plan: InputPlan, rows: list[Any], columns: Any, what: str) -> Prepared:
    if type(columns) is not list or not all(type(c) is str for c in columns):
        raise MalformedRequest(f"{what}: columns must be an array of field names.")
    check_rows(len(rows))
    width = len(columns)
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            raise MalformedRequest(
                f"{what}: row {i} must be an array of {width} values ({', '.join(columns)}), "
                f"got {_describe(row)}."
            )
    cols = {c: [row[j] for row in rows] for j, c in enumerate(columns)}
    return plan.from_columns(cols, len(rows))


# -- Open Inference Protocol v2 -----------------------------------------------------------------


class InferRequest:
    """A parsed ``/infer`` request: the rows, and how the client wants its answer."""

    def __init__(self, prepared: Prepared, request_id: str | None, binary_output: bool) -> None:
        self.prepared = prepared
        self.id = request_id
        self.binary_output = binary_output


def parse_infer(plan: InputPlan, body: bytes, header_length: int | None) -> InferRequest:
    """An OIP v2 inference request, JSON or with binary tensors appended."""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise MalformedRequest(
                f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes."
            )
        header, binary = body[:header_length], body[header_length:]
    else:
        header, binary = body, b""
    req = parse_json(
        header, '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [...]}]}'
    )
    if type(req) is not dict or type(req.get("inputs")) is not list or not req["inputs"]:
        raise MalformedRequest(
            'An inference request is an object with "inputs": a non-empty array of tensors.'
        )
    binary_output = bool((req.get("parameters") or {}).get("binary_data_output", False))
    for out in req.get("outputs") or []:
        if type(out) is not dict or out.get("name") != OUTPUT_NAME:
            raise MalformedRequest(f"This model has one output, '{OUTPUT_NAME}'; ask for it or for none.")
        binary_output = bool((out.get("parameters") or {}).get("binary_data", binary_output))
    tensors: dict[str, np.ndarray | list[Any]] = {}
    shapes: dict[str, list[int]] = {}
    offset = 0
    for t in req["inputs"]:
        name, values, shape, offset = _tensor(t, binary, offset)
        if name in tensors:
            raise MalformedRequest(f"Input tensor '{name}' is given twice.")
        tensors[name], shapes[name] = values, shape
    if offset != len(binary):
        raise MalformedRequest(
            f"{len(binary) - offset} bytes of binary data follow the tensors that use them."
        )
    request_id = req.get("id")
    return InferRequest(
        _prepare(plan, tensors, shapes), str(request_id) if request_id is not None else None, binary_output
    )


def _tensor(t: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray | list[Any], list[int], int]:
    if type(t) is not dict or type(t.get("name")) is not str:
        raise MalformedRequest("Each input tensor is an object with name, shape, datatype and data.")
    name = t["name"]
    shape, datatype = t.get("shape"), t.get("datatype")
    if (
        type(shape) is not list
        or not all(type(d) is int and d >= 0 for d in shape)
        or not 1 <= len(shape) <= 2
    ):
        raise MalformedRequest(f"Input '{name}': shape must be [rows] or [rows, columns], got {shape!r}.")
    if datatype not in DATATYPES:
        raise MalformedRequest(f"Input '{name}': datatype {datatype!r} is not one of {', '.join(DATATYPES)}.")
    size = math.prod(shape)
    size_param = (t.get("parameters") or {}).get("binary_data_size")
    if size_param is not None:
        if type(size_param) is not int or size_param < 0 or offset + size_param > len(binary):
            raise MalformedRequest(f"Input '{name}': binary_data_size {size_param!r} is past the body's end.")
        raw = binary[offset : offset + size_param]
        offset += size_param
        values: np.ndarray | list[Any] = _from_binary(name, datatype, raw, size)
    else:
        data = t.get("data")
        if type(data) is not list:
            raise MalformedRequest(f"Input '{name}' has no data array (nor binary_data_size).")
        while data and type(data[0]) is list:  # nested (row-major) to flat
            data = [v for row in data for v in (row if type(row) is list else [row])]
        if len(data) != size:
            raise MalformedRequest(f"Input '{name}' has {len(data)} values for shape {shape} ({size}).")
        values = data
    return name, values, shape, offset


def _from_binary(name: str, datatype: str, raw: bytes, size: int) -> np.ndarray | list[Any]:
    if datatype == "BYTES":
        items: list[Any] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise MalformedRequest(f"Input '{name}': truncated BYTES element.")
            (length,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4 : pos + 4 + length].decode("utf-8", errors="replace"))
            pos += 4 + length
        if len(items) != size or pos != len(raw):
            raise MalformedRequest(f"Input '{name}': {len(items)} BYTES elements for {size} values.")
        return items
    dtype = _NUMPY_OF[datatype]
    if len(raw) != size * dtype.itemsize:
        raise MalformedRequest(
            f"Input '{name}': {len(raw)} bytes of {datatype} where its shape needs {size * dtype.itemsize}."
        )
    return np.frombuffer(raw, dtype=dtype)


def _prepare(plan: InputPlan, tensors: dict[str, Any], shapes: dict[str, list[int]]) -> Prepared:
    if len(tensors) == 1:
        name, values = next(iter(tensors.items()))
        shape = shapes[name]
        if len(shape) == 2 and (shape[1] != 1 or name not in plan.names):
            check_rows(shape[0])
            if isinstance(values, np.ndarray):
                return plan.from_matrix(values.reshape(shape))
            matrix = [values[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
            if shape[1] != len(plan.names):
                raise MalformedRequest(
                    f"A single input tensor must have shape [rows, {len(plan.names)}], one column per "
                    f"field in this order: {', '.join(plan.names)}; got shape {shape}."
                )
            cols = {c: [row[j] for row in matrix] for j, c in enumerate(plan.names)}
            return plan.from_columns(cols, shape[0])
    rows = {shape[0] for shape in shapes.values()}
    if len(rows) != 1:
        raise MalformedRequest(f"The input tensors differ in rows: {sorted(rows)}.")
    for name, shape in shapes.items():
        if len(shape) == 2 and shape[1] != 1:
            raise MalformedRequest(
                f"Input '{name}' has shape {shape}; send one tensor of shape [rows] per field, or "
                f"one [rows, {len(plan.names)}] tensor with the fields in order: {', '.join(plan.names)}."
            )
    n = rows.pop()
    check_rows(n)
    return plan.from_columns(tensors, n)


def infer_response(
    model_name: str,
    model_version: int,
    request_id: str | None,
    outputs: list[Any],
    binary: bool,
    prediction_ids: list[str] | None = None,
) -> tuple[bytes, int | None]:
    """The ``/infer`` answer and, for a binary answer, the length of its JSON header.

    The prediction ids (for feedback) ride in the response's ``parameters`` as one
    comma-separated string: the protocol allows only scalar parameter values.
    """
    array = np.asarray(outputs)
    if array.dtype.kind in "USO":
        datatype, array = "BYTES", array.astype(object)
    elif array.dtype.kind == "b":
        datatype = "BOOL"
    elif array.dtype.kind in "iu":
        datatype, array = "INT64", array.astype(np.int64)
    else:
        datatype, array = "FP64", array.astype(np.float64)
    tensor: dict[str, Any] = {"name": OUTPUT_NAME, "datatype": datatype, "shape": list(array.shape)}
    response: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        response["id"] = request_id
    if prediction_ids:
        response["parameters"] = {"prediction_ids": ",".join(prediction_ids)}
    response["outputs"] = [tensor]
    if not binary:
        tensor["data"] = array.ravel().tolist()
        return orjson.dumps(response), None
    if datatype == "BYTES":
        raw = b"".join(
            struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in array.ravel().tolist())
        )
    else:
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(response)
    return header + raw, len(header)


def _describe(value: Any) -> str:
    if type(value) is dict:
        return "an object with " + (", ".join(sorted(map(str, value))[:8]) or "no fields")
    if type(value) is list:
        return f"an array of {len(value)}"
    return "null" if value is None else type(value).__name__
