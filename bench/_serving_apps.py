"""The ASGI apps ``serving.py`` runs beside ``gyre serve``, each as its own server process.

* :func:`predict_app`: the yardstick, a minimal FastAPI app that does what a prediction needs
  and nothing more: JSON body ``{"rows": [{column: value}, ...]}`` -> numpy ->
  ``lightgbm.Booster.predict`` -> JSON. The booster comes from ``GYRE_BENCH_MODEL_FILE`` and the
  column order from ``GYRE_BENCH_COLUMNS`` (comma separated).
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
    return create_app(settings, token=settings.get("server", "token") or None, auth=True, flush_process=True)
