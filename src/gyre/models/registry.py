"""The model registry: registered models, immutable versions, and aliases with their full history.

A version is never edited; what moves is an alias (``champion``, ``challenger``, any name),
and every move is kept in ``alias_history`` with who moved it and why. Models are
addressed by URI: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME/latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gyre.errors import AlreadyExists, InvalidArgument, NotFound, did_you_mean
from gyre.ids import new_id, utcnow
from gyre.jsonsafe import decode_floats, encode_floats
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.schema import AliasHistory, ModelAlias, ModelVersion, RegisteredModel

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w\-.]{0,255}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
RESERVED_ALIASES = {"latest"}
# A version's status: ``ready``, or held by a pipeline for review (approved: ready again;
# rejected: rejected). ``models:/NAME/latest`` resolves to the newest ready version.
READY, PENDING_REVIEW, REJECTED = "ready", "pending_review", "rejected"
VERSION_STATUSES = (READY, PENDING_REVIEW, REJECTED)


@dataclass
class ModelVersionInfo:
    name: str
    version: int
    package_digest: str
    flavor: str
    created_by: str
    created_at: datetime
    run_id: str | None = None
    artifact_path: str | None = None
    signature: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset_versions: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    status: str = "ready"
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass
class RegisteredModelInfo:
    name: str
    description: str
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None
    """The newest ready version (what ``models:/NAME/latest`` resolves to); versions held for
    review or rejected do not count."""
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass
class AliasMove:
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: a name and exactly one of version, alias, or latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version if self.version is not None else 'latest'}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME/latest``."""
    if not uri.startswith("models:/"):
        raise InvalidArgument(
            f"{uri!r} is not a model URI; write models:/NAME/VERSION or models:/NAME@ALIAS."
        )
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        _check_model_name(name)
        return ModelRef(name, alias=alias)
    name, _, version = rest.partition("/")
    _check_model_name(name)
    if version in {"", "latest"}:
        return ModelRef(name)
    if not version.isdigit():
        raise InvalidArgument(f"In {uri!r} the version must be a number, 'latest', or use @ALIAS.")
    return ModelRef(name, version=int(version))


# -- registered models -----------------------------------------------------------------


def create_registered_model(
    meta: MetaStore, name: str, description: str = "", tags: dict[str, str] | None = None
) -> RegisteredModelInfo:
    _check_model_name(name)
    with meta.write() as uow:
        if uow.session.get(RegisteredModel, name) is not None:
            raise AlreadyExists(f"Model '{name}' already exists; register a new version of it instead.")
        _add_model(uow.session, name, description, tags)
        uow.record("model.created", f"model:{name}", {})
    return get_registered_model(meta, name)


def get_registered_model(meta: MetaStore, name: str) -> RegisteredModelInfo:
    with meta.read() as s:
        rm = _find_model(s, name)
        latest = s.scalar(
            select(func.max(ModelVersion.version)).where(
                ModelVersion.model_name == name, ModelVersion.status == READY
            )
        )
        aliases = dict(
            s.execute(select(ModelAlias.alias, ModelAlias.version).where(ModelAlias.model_name == name)).all()
        )
        return RegisteredModelInfo(
            rm.name, rm.description, dict(rm.tags or {}), rm.created_at, rm.updated_at, latest, aliases
        )


def list_registered_models(meta: MetaStore) -> list[RegisteredModelInfo]:
    with meta.read() as s:
        models = s.scalars(select(RegisteredModel).order_by(RegisteredModel.name)).all()
        latest = dict(
            s.execute(
                select(ModelVersion.model_name, func.max(ModelVersion.version))
                .where(ModelVersion.status == READY)
                .group_by(ModelVersion.model_name)
            ).all()
        )
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in s.execute(
            select(ModelAlias.model_name, ModelAlias.alias, ModelAlias.version)
        ):
            aliases.setdefault(name, {})[alias] = version
        return [
            RegisteredModelInfo(
                m.name,
                m.description,
                dict(m.tags or {}),
                m.created_at,
                m.updated_at,
                latest.get(m.name),
                aliases.get(m.name, {}),
            )
            for m in models
        ]


# -- versions ----------------------------------------------------------------------------


def create_model_version(
    meta: MetaStore,
    name: str,
    *,
    package_digest: str,
    flavor: str,
    signature: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dataset_versions: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    description: str = "",
    status: str = READY,
) -> ModelVersionInfo:
    """Register a stored model package as the next version of ``name`` (created if new)."""
    _check_model_name(name)
    if status not in VERSION_STATUSES:
        raise InvalidArgument(f"Model version status {status!r} is not one of {', '.join(VERSION_STATUSES)}.")
    with meta.write() as uow:
        s = uow.session
        if s.get(RegisteredModel, name) is None:
            _add_model(s, name, "", None)
            uow.record("model.created", f"model:{name}", {})
        # Inside a write transaction (BEGIN IMMEDIATE on SQLite, a row lock on PostgreSQL),
        # so two registrations at once cannot take the same number.
        s.execute(select(RegisteredModel).where(RegisteredModel.name == name).with_for_update())
        version = (
            s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_name == name)) or 0
        ) + 1
        mv = ModelVersion(
            model_name=name,
            version=version,
            run_id=run_id,
            artifact_path=artifact_path,
            package_digest=package_digest,
            flavor=flavor,
            signature=signature,
            metrics=encode_floats(metrics or {}),  # JSON columns cannot hold NaN or infinity
            dataset_versions=dataset_versions or {},
            description=description,
            status=status,
            created_by=uow.actor,
            created_at=utcnow(),
        )
        s.add(mv)
        _find_model(s, name).updated_at = mv.created_at
        uow.record(
            "model.version_created",
            f"model:{name}/{version}",
            {
                "name": name,
                "version": version,
                "run_id": run_id,
                "flavor": flavor,
                "package_digest": package_digest,
            },
        )
    return _version_info(mv, [])


def get_model_version(meta: MetaStore, name: str, version: int) -> ModelVersionInfo:
    with meta.read() as s:
        return _get_version(s, name, version)


def list_model_versions(meta: MetaStore, name: str) -> list[ModelVersionInfo]:
    with meta.read() as s:
        _find_model(s, name)
        aliases = _aliases_by_version(s, name)
        rows = s.scalars(
            select(ModelVersion).where(ModelVersion.model_name == name).order_by(ModelVersion.version.desc())
        )
        return [_version_info(mv, aliases.get(mv.version, [])) for mv in rows]


def resolve(meta: MetaStore, uri: str | ModelRef) -> ModelVersionInfo:
    """The version a model URI points at now."""
    ref = parse_model_uri(uri) if isinstance(uri, str) else uri
    with meta.read() as s:
        _find_model(s, ref.name)
        if ref.alias is not None:
            version = s.scalar(
                select(ModelAlias.version).where(
                    ModelAlias.model_name == ref.name, ModelAlias.alias == ref.alias
                )
            )
            if version is None:
                known = _aliases_by_version(s, ref.name)
                names = sorted(a for v in known.values() for a in v)
                raise NotFound(
                    f"Model '{ref.name}' has no alias '{ref.alias}'; "
                    f"its aliases: {', '.join(names) or 'none'}. "
                    f"Set one with 'gyre models alias {ref.name} {ref.alias} VERSION'."
                    + did_you_mean(ref.alias, names)
                )
            return _get_version(s, ref.name, version)
        if ref.version is None:
            version = s.scalar(
                select(func.max(ModelVersion.version)).where(
                    ModelVersion.model_name == ref.name, ModelVersion.status == READY
                )
            )
            if version is None:
                held = s.scalar(select(func.count()).where(ModelVersion.model_name == ref.name))
                raise NotFound(
                    f"Model '{ref.name}' has no versions yet."
                    if not held
                    else f"Model '{ref.name}' has no ready version: its {held} version(s) are held for "
                    "review or rejected ('gyre models approve' makes one ready)."
                )
            return _get_version(s, ref.name, version)
        return _get_version(s, ref.name, ref.version)


# -- aliases -----------------------------------------------------------------------------


def set_alias(meta: MetaStore, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo:
    """Point ``alias`` at ``version`` (moving it if it pointed elsewhere); the move is kept in history."""
    with meta.write() as uow:
        return move_alias(uow, name, alias, version, reason)


def move_alias(uow: UnitOfWork, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo:
    """:func:`set_alias` inside the caller's transaction (e.g. a deployment's promotion, which
    moves the alias and records its own state in one commit)."""
    _check_alias(alias)
    s = uow.session
    _get_version(s, name, version)
    current = s.get(ModelAlias, (name, alias))
    previous = current.version if current else None
    if previous == version:
        return _get_version(s, name, version)
    now = utcnow()
    if current is None:
        s.add(ModelAlias(model_name=name, alias=alias, version=version, updated_at=now))
    else:
        current.version, current.updated_at = version, now
    s.add(
        AliasHistory(
            id=new_id(),
            model_name=name,
            alias=alias,
            from_version=previous,
            to_version=version,
            actor=uow.actor,
            reason=reason,
            at=now,
        )
    )
    uow.record(
        "model.alias_set",
        f"model:{name}@{alias}",
        {"name": name, "alias": alias, "from_version": previous, "to_version": version, "reason": reason},
    )
    s.flush()
    return _get_version(s, name, version)


def delete_alias(meta: MetaStore, name: str, alias: str, reason: str = "") -> None:
    with meta.write() as uow:
        s = uow.session
        current = s.get(ModelAlias, (name, alias))
        if current is None:
            raise NotFound(f"Model '{name}' has no alias '{alias}'.")
        s.delete(current)
        s.add(
            AliasHistory(
                id=new_id(),
                model_name=name,
                alias=alias,
                from_version=current.version,
                to_version=None,
                actor=uow.actor,
                reason=reason,
                at=utcnow(),
            )
        )
        uow.record(
            "model.alias_deleted",
            f"model:{name}@{alias}",
            {"name": name, "alias": alias, "from_version": current.version},
        )


def alias_history(meta: MetaStore, name: str, alias: str | None = None) -> list[AliasMove]:
    with meta.read() as s:
        _find_model(s, name)
        q = select(AliasHistory).where(AliasHistory.model_name == name)
        if alias:
            q = q.where(AliasHistory.alias == alias)
        return [
            AliasMove(h.model_name, h.alias, h.from_version, h.to_version, h.actor, h.reason, h.at)
            for h in s.scalars(q.order_by(AliasHistory.at, AliasHistory.id))
        ]


# -- helpers -----------------------------------------------------------------------------


def _add_model(s: Session, name: str, description: str, tags: dict[str, str] | None) -> None:
    now = utcnow()
    s.add(
        RegisteredModel(name=name, description=description, tags=tags or {}, created_at=now, updated_at=now)
    )
    s.flush()


def _find_model(s: Session, name: str) -> RegisteredModel:
    rm = s.get(RegisteredModel, name)
    if rm is None:
        names = list(s.scalars(select(RegisteredModel.name)))
        raise NotFound(
            f"Model '{name}' is not registered; 'gyre models list' shows the models."
            + did_you_mean(name, names)
        )
    return rm


def _get_version(s: Session, name: str, version: int) -> ModelVersionInfo:
    mv = s.get(ModelVersion, (name, version))
    if mv is None:
        _find_model(s, name)
        versions = list(s.scalars(select(ModelVersion.version).where(ModelVersion.model_name == name)))
        raise NotFound(
            f"Model '{name}' has no version {version}; it has versions: "
            f"{', '.join(map(str, sorted(versions))) or 'none'}."
        )
    return _version_info(mv, _aliases_by_version(s, name).get(version, []))


def _aliases_by_version(s: Session, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in s.execute(
        select(ModelAlias.alias, ModelAlias.version)
        .where(ModelAlias.model_name == name)
        .order_by(ModelAlias.alias)
    ):
        out.setdefault(version, []).append(alias)
    return out


def _version_info(mv: ModelVersion, aliases: list[str]) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.model_name,
        version=mv.version,
        package_digest=mv.package_digest,
        flavor=mv.flavor,
        created_by=mv.created_by,
        created_at=mv.created_at,
        run_id=mv.run_id,
        artifact_path=mv.artifact_path,
        signature=mv.signature,
        metrics=decode_floats(mv.metrics or {}),
        dataset_versions=dict(mv.dataset_versions or {}),
        description=mv.description,
        status=mv.status,
        aliases=aliases,
    )


def _check_model_name(name: str) -> None:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidArgument(
            f"Invalid model name {name!r}: start with a letter or digit, "
            "then letters, digits, _ - . (max 256)."
        )


def _check_alias(alias: str) -> None:
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(
            f"'{alias}' is reserved (models:/NAME/latest is the newest version); pick another alias."
        )
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidArgument(
            f"Invalid alias {alias!r}: lowercase letters, digits, _ and -, "
            "starting with a letter (e.g. champion)."
        )
