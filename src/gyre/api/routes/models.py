"""``/api/v1/models``: registered models, their immutable versions, aliases and alias history."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from gyre.api.routes import Meta, Store, reply
from gyre.api.schemas import AliasSet, ModelCreate, ModelVersionCreate, to_json
from gyre.errors import NotFound
from gyre.jsonsafe import decode_floats
from gyre.models import registry

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=201)
def create_model(body: ModelCreate, meta: Meta) -> JSONResponse:
    """Register a model name (409 if it exists)."""
    return reply(to_json(registry.create_registered_model(meta, body.name, body.description, body.tags)), 201)


@router.get("")
def list_models(meta: Meta) -> JSONResponse:
    return reply({"models": [to_json(m) for m in registry.list_registered_models(meta)]})


@router.get("/resolve")
def resolve(meta: Meta, uri: str | None = None) -> JSONResponse:
    """The version ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME/latest`` points at."""
    if uri is None:  # a model may be named "resolve"; without ?uri= this is GET /models/{name}
        return get_model("resolve", meta)
    return reply(to_json(registry.resolve(meta, uri)))


@router.get("/{name}")
def get_model(name: str, meta: Meta) -> JSONResponse:
    return reply(to_json(registry.get_registered_model(meta, name)))


@router.post("/{name}/versions", status_code=201)
def create_model_version(name: str, body: ModelVersionCreate, meta: Meta, store: Store) -> JSONResponse:
    """Register an uploaded model package (a stored tree) as the next version of ``name``."""
    if not store.exists(body.package_digest):
        raise NotFound(
            f"Package {body.package_digest} is not on the server; upload it with PUT /api/v1/blobs "
            "(a run's log_model does) before registering it."
        )
    fields = body.model_dump()
    fields["metrics"] = decode_floats(fields["metrics"])
    return reply(to_json(registry.create_model_version(meta, name, **fields)), 201)


@router.get("/{name}/versions")
def list_model_versions(name: str, meta: Meta) -> JSONResponse:
    """Versions of ``name``, newest first."""
    return reply({"versions": [to_json(v) for v in registry.list_model_versions(meta, name)]})


@router.get("/{name}/versions/{version}")
def get_model_version(name: str, version: int, meta: Meta) -> JSONResponse:
    return reply(to_json(registry.get_model_version(meta, name, version)))


@router.put("/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasSet, meta: Meta) -> JSONResponse:
    """Point ``alias`` at a version (moving it if set); the move is kept in the history."""
    return reply(to_json(registry.set_alias(meta, name, alias, body.version, body.reason)))


@router.delete("/{name}/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, meta: Meta, reason: str = "") -> Response:
    registry.delete_alias(meta, name, alias, reason)
    return Response(status_code=204)


@router.get("/{name}/aliases/history")
def alias_history(name: str, meta: Meta, alias: str | None = None) -> JSONResponse:
    """Every alias move of ``name`` (or of one ``alias``), oldest first."""
    return reply({"history": [to_json(m) for m in registry.alias_history(meta, name, alias)]})
