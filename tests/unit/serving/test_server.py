"""The prediction routes of the server app, in-process: answers, errors, batching, log, readiness."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Callable

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from ulid import ULID

import gyre
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.lake import Lake

from .conftest import COLUMNS, AppClient, Data, Exploding, apply_definitions, lake_rows, register, row

PREDICT = "/v1/endpoints/fraud/predict"
StartApp = Callable[..., AppClient]


def expected(client: Client, x: np.ndarray, uri: str = "models:/fraud@champion") -> list[float]:
    return client.load_model(uri).predict(pd.DataFrame(x, columns=COLUMNS)).tolist()  # type: ignore[no-any-return]


def test_one_row_and_many_rows(client: Client, data: Data, fraud: int, start_app: StartApp) -> None:
    app = start_app()
    one = app.post(PREDICT, json={"row": row(data.x[0])})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["endpoint"] == "fraud" and body["model"] == "fraud" and body["model_version"] == fraud
    assert body["predictions"] == pytest.approx(expected(client, data.x[:1]))
    assert len(body["prediction_ids"]) == 1 and ULID.from_str(body["prediction_ids"][0])

    many = app.post(PREDICT, json={"rows": [row(r) for r in data.x[:50]]}).json()
    assert many["predictions"] == pytest.approx(expected(client, data.x[:50]))
    assert len(set(many["prediction_ids"])) == 50

    listed = app.get("/v1/endpoints").json()
    assert [e["name"] for e in listed["endpoints"]] == ["fraud"] and listed["not_serving"] == {}
    described = app.get("/v1/endpoints/fraud").json()
    assert [f["name"] for f in described["inputs"]] == COLUMNS
    assert described["model_version"] == fraud and described["runs_inline"] is True


def test_concurrent_requests_make_fewer_model_calls_and_each_gets_its_own_answer(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    app = start_app()
    endpoint = app.serving.endpoints["fraud"]
    before = endpoint.batcher.batches
    responses = app.post_many(PREDICT, [{"row": row(r)} for r in data.x[:32]])
    assert all(r.status_code == 200 for r in responses)
    calls = endpoint.batcher.batches - before
    assert calls < 32, f"{calls} model calls for 32 concurrent requests"
    answers = [r.json()["predictions"][0] for r in responses]
    assert answers == pytest.approx(expected(client, data.x[:32]))


def test_mlflow_invocations(client: Client, data: Data, fraud: int, start_app: StartApp) -> None:
    app = start_app()
    url = "/v1/endpoints/fraud/invocations"
    frame = pd.DataFrame(data.x[:4], columns=COLUMNS)
    want = expected(client, data.x[:4])
    payloads = [
        {"dataframe_split": frame.to_dict(orient="split")},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
    ]
    for payload in payloads:
        r = app.post(url, json=payload)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": pytest.approx(want)}


def test_mlflow_payloads_from_mlflows_own_helper(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.models import convert_input_example_to_serving_input

    frame = pd.DataFrame(data.x[:3], columns=COLUMNS)
    with warnings.catch_warnings():  # MLflow's helper trips a deprecation in the newest pandas
        warnings.simplefilter("ignore")
        payload = convert_input_example_to_serving_input(frame)
    assert payload is not None and "dataframe_split" in json.loads(payload)
    app = start_app()
    r = app.post(
        "/v1/endpoints/fraud/invocations", content=payload, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pytest.approx(expected(client, data.x[:3]))


def test_open_inference_protocol_over_json(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    app = start_app()
    assert app.get("/v2/health/live").json() == {"live": True}
    assert app.get("/v2/health/ready").status_code == 200
    assert app.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = app.get("/v2/models/fraud").json()
    assert meta["versions"] == [str(fraud)] and meta["platform"] == "gyre_lightgbm"
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLUMNS]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert app.get("/v2/models/fraud/ready").status_code == 200
    assert app.get(f"/v2/models/fraud/versions/{fraud}/ready").status_code == 200
    assert app.get("/v2/models/nope/ready").status_code == 503

    x = data.x[:3]
    matrix = {
        "inputs": [
            {"name": "input-0", "shape": [3, 4], "datatype": "FP32", "data": x.astype(np.float32).tolist()}
        ]
    }
    r = app.post(f"/v2/models/fraud/versions/{fraud}/infer", json={**matrix, "id": "req-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-1" and out["model_name"] == "fraud" and out["model_version"] == str(fraud)
    assert out["outputs"][0]["shape"] == [3] and out["outputs"][0]["datatype"] == "FP64"
    assert out["outputs"][0]["data"] == pytest.approx(expected(client, x.astype(np.float32)))
    named = {
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": x[:, j].tolist()}
            for j, c in enumerate(COLUMNS)
        ]
    }
    assert app.post("/v2/models/fraud/infer", json=named).json()["outputs"][0]["data"] == pytest.approx(
        expected(client, x)
    )

    wrong = app.post("/v2/models/fraud/versions/99/infer", json=named)
    assert wrong.status_code == 404 and "serves version(s) 1" in wrong.json()["error"]
    bad = app.post("/v2/models/fraud/infer", json={"inputs": [{**named["inputs"][0], "data": [1, "x", 3]}]})
    assert bad.status_code == 422
    assert (
        bad.json()["error"].startswith("The request does not match") and bad.json()["code"] == "invalid_input"
    )
    assert bad.json()["fields"]["amount"] == "row 1: expected a number, got 'x'"


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    register(client, Exploding(), "exploding", data.frame.head(3))
    apply_definitions(
        client,
        gyre.Endpoint("fraud", model="fraud@champion"),
        gyre.Endpoint("exploding", model="exploding@champion"),
    )
    app = start_app(max_body_size=20_000)
    good = {"row": row(data.x[0])}

    malformed = app.post(
        PREDICT, content=b'{"row": {"amount": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["message"]
    shape = app.post(PREDICT, json={"amount": 1})
    assert shape.status_code == 400 and 'Send {"rows"' in shape.json()["message"]
    media = app.post(
        PREDICT, content=b"amount=1", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert media.status_code == 415 and "send application/json" in media.json()["message"]
    big = app.post(PREDICT, json={"rows": [row(data.x[0])] * 300})
    assert big.status_code == 413 and "limit of 20,000 bytes" in big.json()["message"]
    too_many = start_app().post(PREDICT, json={"rows": [{}] * 10_001})
    assert too_many.status_code == 413 and "send at most 10,000 per request" in too_many.json()["message"]

    invalid = app.post(PREDICT, json={"row": {**row(data.x[0]), "amount": "abc", "colour": "red"}})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_input"
    assert invalid.json()["fields"] == {
        "amount": "expected a number, got 'abc'",
        "colour": "not a field of this endpoint; it reads: amount, age, score, hour",
    }
    missing = app.post(PREDICT, json={"row": {"amount": 1.0}})
    assert missing.json()["fields"]["age"] == "missing (expected a number)"
    nan = app.post(PREDICT, content=b'{"row": {"amount": NaN, "age": 1, "score": 1, "hour": 1}}')
    assert nan.status_code == 422 and nan.json()["fields"] == {"amount": "expected a finite number, got NaN"}

    unknown = app.post("/v1/endpoints/frod/predict", json=good)
    assert unknown.status_code == 404 and "Did you mean 'fraud'?" in unknown.json()["message"]
    assert app.get(PREDICT).status_code == 405
    assert app.get("/v1/endpoints/fraud/nothing").status_code == 404

    boom = app.post(
        "/v1/endpoints/exploding/predict", json={"row": {"amount": 666, "age": 1, "score": 1, "hour": 1}}
    )
    assert boom.status_code == 500 and boom.json()["error"] == "prediction_failed"
    assert "ValueError: boom: the model cannot handle 666" in boom.json()["message"]
    fine = app.post(
        "/v1/endpoints/exploding/predict", json={"row": {"amount": 1, "age": 2, "score": 3, "hour": 4}}
    )
    assert fine.status_code == 200 and fine.json()["predictions"] == [10.0]
    assert app.post(PREDICT, json=good).status_code == 200


def test_a_failing_request_in_a_batch_fails_alone(client: Client, data: Data, start_app: StartApp) -> None:
    register(client, Exploding(), "exploding", data.frame.head(3))
    apply_definitions(client, gyre.Endpoint("exploding", model="exploding@champion"))
    app = start_app()
    bodies = [{"row": {"amount": 666 if i == 3 else i, "age": 0, "score": 0, "hour": 0}} for i in range(8)]
    responses = app.post_many("/v1/endpoints/exploding/predict", bodies)
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200, 200, 200]
    assert [r.json()["predictions"][0] for i, r in enumerate(responses) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


def test_every_answered_prediction_is_logged_before_the_answer(
    client: Client, data: Data, fraud: int, start_app: StartApp, settings: Settings
) -> None:
    app = start_app()
    ids: list[str] = []
    for i in range(10):
        ids += app.post(PREDICT, json={"rows": [row(r) for r in data.x[i : i + 1 + i % 3]]}).json()[
            "prediction_ids"
        ]
    for r in app.post_many(PREDICT, [{"row": row(r)} for r in data.x[:20]]):
        ids += r.json()["prediction_ids"]
    app.post(PREDICT, json={"row": {"amount": "bad"}})  # refused: not logged
    # Durable already (the buffer), committed to the lake on flush.
    assert app.app.state.push.pending("predictions") + len(lake_rows(settings)) == len(ids)
    app.app.state.push.flush()
    rows = lake_rows(settings)
    assert len(rows) == len(ids) and sorted(r["prediction_id"] for r in rows) == sorted(ids)
    first = next(r for r in rows if r["prediction_id"] == ids[0])
    assert first["endpoint"] == "fraud" and first["model"] == "fraud" and first["model_version"] == fraud
    assert json.loads(first["inputs"]) == pytest.approx(row(data.x[0]))
    assert json.loads(first["output"]) == pytest.approx(first["prediction"])
    assert first["entity"] is None and first["features"] is None and first["latency_ms"] > 0
    assert first["time"].tzinfo is not None

    dataset = Lake(settings.store_url).scan("predictions")  # noqa: F841 - read by DuckDB below
    answer = duckdb.sql(
        "SELECT count(*), min(model_version) FROM dataset WHERE endpoint = 'fraud'"
    ).fetchall()
    assert answer == [(len(ids), fraud)]


def test_readyz_names_the_endpoint_whose_model_cannot_load_and_the_others_serve(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    apply_definitions(
        client,
        gyre.Endpoint("fraud", model="fraud@champion"),
        gyre.Endpoint("ghost", model="ghost@champion"),
        gyre.Endpoint("stale", model="fraud@challenger"),
    )
    app = start_app()
    ready = app.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"] == "endpoint_not_ready"
    problems = ready.json()["endpoints"]
    assert set(problems) == {"ghost", "stale"}
    assert "Model 'ghost' is not registered" in problems["ghost"]
    assert "has no alias 'challenger'" in problems["stale"]
    assert "Endpoint 'ghost' is not serving" in ready.json()["message"]
    assert app.get("/v2/health/ready").status_code == 503
    not_ready = app.post("/v1/endpoints/ghost/predict", json={"row": {}})
    assert not_ready.status_code == 503 and not_ready.json()["error"] == "endpoint_not_ready"
    assert app.post(PREDICT, json={"row": row(data.x[0])}).status_code == 200
    assert app.get("/healthz").status_code == 200


def test_prometheus_metrics_per_endpoint_and_version(
    client: Client, data: Data, fraud: int, start_app: StartApp
) -> None:
    app = start_app()
    for r in data.x[:5]:
        app.post(PREDICT, json={"row": row(r)})
    app.post(PREDICT, json={"rows": [row(r) for r in data.x[:10]]})
    app.post(PREDICT, json={"row": {"amount": "x"}})
    text = app.get("/metrics").text
    labels = f'endpoint="fraud",model="fraud",model_version="{fraud}"'
    assert f"gyre_predict_requests_total{{{labels}}} 6.0" in text
    assert f"gyre_predict_rows_total{{{labels}}} 15.0" in text
    assert f'gyre_predict_errors_total{{{labels},status="422"}} 1.0' in text
    assert f"gyre_predict_latency_seconds_count{{{labels}}} 6.0" in text
    assert f"gyre_predict_batch_size_sum{{{labels}}} 15.0" in text
    assert 'gyre_endpoint_ready{endpoint="fraud"} 1.0' in text


def test_a_model_with_text_columns(client: Client, data: Data, start_app: StartApp) -> None:
    frame = data.frame.assign(country=np.where(data.x[:, 2] > 0, "FR", "DE"))
    model = make_pipeline(
        ColumnTransformer([("country", OneHotEncoder(), ["country"])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, data.y)
    register(client, model, "geo", frame.head(3))
    apply_definitions(client, gyre.Endpoint("geo", model="geo@champion"))
    app = start_app()
    rows = frame.head(4).to_dict(orient="records")
    r = app.post("/v1/endpoints/geo/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pytest.approx(model.predict_proba(frame.head(4))[:, 1].tolist())
    wrong = app.post("/v1/endpoints/geo/predict", json={"row": {**rows[0], "country": 3}})
    assert wrong.json()["fields"] == {"country": "expected a string, got 3"}
    assert app.get("/v2/models/geo").json()["inputs"][-1] == {
        "name": "country",
        "datatype": "BYTES",
        "shape": [-1],
    }


def test_a_server_process_freezes_what_start_up_made_for_the_collector(
    client: Client, fraud: int, start_app: StartApp
) -> None:
    """A full collection over the ~230k objects of start-up stalls every request (~120 ms)."""
    gc.unfreeze()
    try:
        start_app()
        assert gc.get_freeze_count() == 0  # a test or an embedding process keeps its collector
        app = start_app(freeze_gc=True)
        assert gc.get_freeze_count() > 10_000
        assert app.post("/v1/endpoints/fraud/predict", json={"row": row([1, 2, 3, 4])}).status_code == 200
    finally:
        gc.unfreeze()
