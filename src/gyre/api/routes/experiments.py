"""``/api/v1/experiments``: create, list, get by name or id."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from gyre.api.routes import Meta, reply
from gyre.api.schemas import ExperimentCreate
from gyre.tracking import service as tracking

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.post("", status_code=201)
def create_experiment(body: ExperimentCreate, meta: Meta) -> JSONResponse:
    """Create an experiment (409 if the name is taken)."""
    exp = tracking.create_experiment(meta, body.name, body.description, body.tags)
    return reply(exp.to_dict(), 201)


@router.get("")
def list_experiments(meta: Meta) -> JSONResponse:
    """All experiments, by name."""
    return reply({"experiments": [e.to_dict() for e in tracking.list_experiments(meta)]})


@router.get("/{name_or_id:path}")
def get_experiment(name_or_id: str, meta: Meta) -> JSONResponse:
    """One experiment by name or id."""
    return reply(tracking.get_experiment(meta, name_or_id).to_dict())
