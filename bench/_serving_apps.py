"""The ASGI apps ``serving.py`` runs beside ``gyre serve``, each as its own server process.

* :func:`predict_app`: the yardstick, a minimal FastAPI app that does what a prediction needs
  and nothing more: JSON body ``{"rows": [{column: value}, ...]}`` -> numpy ->
  ``lightgbm.Booster.predict`` -> JSON. The booster comes from ``GYRE_BENCH_MODEL_FILE`` and the
  column order from ``GYRE_BENCH_COLUMNS`` (comma separated).
* :func:`redis_predict_app`: the yardstick plus, per row, what a hand-written Redis lookup costs:
  one ``HMGET`` of the user's features from the hash Gyre materialized
  (``GYRE_BENCH_REDIS_HASH`` at ``GYRE_BENCH_REDIS_URL``), parsed with orjson; the request's
  own columns are ``GYRE_BENCH_REQUEST_COLUMNS``. The floor of the Redis rows on this machine.
* :func:`body_app`: reads the body and answers a constant: the HTTP stack alone.
* :func:`gyre_app`: Gyre's server app for the project in the working directory, built as
  ``gyre serve`` builds it (authentication on, the token from ``GYRE_SERVER_TOKEN``), for
  running it under another ASGI server (granian).

All are factories (``uvicorn --factory``, ``granian --factory``).
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

_JSON = "application/json"


def _health(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)


def predict_app() -> FastAPI:
    import lightgbm as lgb
    import numpy as np

    booster = lgb.Booster(model_file=os.environ["GYRE_BENCH_MODEL_FILE"])
    columns = os.environ["GYRE_BENCH_COLUMNS"].split(",")
    app = FastAPI()
    _health(app)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        rows = orjson.loads(await request.body())["rows"]
        x = np.array([[row[c] for c in columns] for row in rows], dtype=np.float64)
        return Response(orjson.dumps({"predictions": booster.predict(x).tolist()}), media_type=_JSON)

    return app


def redis_predict_app() -> FastAPI:
    import lightgbm as lgb
    import numpy as np
    import redis

    booster = lgb.Booster(model_file=os.environ["GYRE_BENCH_MODEL_FILE"])
    columns = os.environ["GYRE_BENCH_COLUMNS"].split(",")
    request_columns = set(os.environ["GYRE_BENCH_REQUEST_COLUMNS"].split(","))
    client = redis.Redis.from_url(os.environ["GYRE_BENCH_REDIS_URL"])
    hash_key = os.environ["GYRE_BENCH_REDIS_HASH"]
    app = FastAPI()
    _health(app)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        rows = orjson.loads(await request.body())["rows"]
        # A field is "<order>|<values JSON>" (see gyre.features.online.redis).
        found = client.hmget(hash_key, [f"[{row['user_id']}]" for row in rows])
        features = [orjson.loads(v.partition(b"|")[2]) for v in found]
        x = np.array(
            [
                [r[c] if c in request_columns else f[c] for c in columns]
                for r, f in zip(rows, features, strict=True)
            ],
            dtype=np.float64,
        )
        return Response(orjson.dumps({"predictions": booster.predict(x).tolist()}), media_type=_JSON)

    return app


def body_app() -> FastAPI:
    app = FastAPI()
    _health(app)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(b'{"predictions":[0.0]}', media_type=_JSON)

    return app


def gyre_app() -> Any:
    from gyre.api.app import create_app
    from gyre.config import load_settings

    settings = load_settings()
    return create_app(
        settings, token=settings.get("server", "token") or None, auth=True, flush_process=True, freeze_gc=True
    )
