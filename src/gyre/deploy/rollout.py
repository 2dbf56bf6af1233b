"""Starting, advancing, promoting and rolling back deployments.

A deployment moves through its steps only here, each move one transaction that writes the
new state, an event (``deployment.started``, ``.step``, ``.promoted``, ``.rolled_back``,
``.completed``, ``.rejected``) and an audit record; a promotion moves the endpoint's alias in
the same transaction. A move is conditional on the state it was decided from, so two
controllers ticking at once cannot take the same step twice.

Lifecycle by strategy:

* canary: the candidate answers ``steps[0]`` % of entities; after each interval the step is
  analysed (:mod:`gyre.deploy.analysis`): pass → next step, and after the last (100 %) →
  promote; fail → roll back.
* blue_green: the candidate was checked before the start (its package loads and predicts on
  its input example); all traffic switches to it at once with the baseline still loaded; after
  one interval → promote, or roll back at once.
* shadow: the candidate predicts on a copy of the traffic for one interval; its answers are
  logged, never returned; pass → ``completed``, fail → ``rejected``. Nothing is promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update

from gyre.data.lake import Lake
from gyre.deploy import analysis
from gyre.deploy.records import (
    COMPLETED,
    PROMOTED,
    REJECTED,
    ROLLED_BACK,
    RUNNING,
    DeploymentInfo,
    info,
    running,
)
from gyre.errors import Conflict, GyreError, InvalidArgument, NotFound
from gyre.ids import new_id, utcnow
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.deploy_schema import DeploymentRecord
from gyre.meta.registry import get_registered, list_registered
from gyre.models import registry
from gyre.serving.definition import STRATEGIES, Rollout, check_steps
from gyre.serving.routing import Split
from gyre.store import ArtifactStore

log = logging.getLogger(__name__)

CHALLENGER = "challenger"


def traffic(meta: MetaStore) -> dict[str, Split]:
    """The running deployments' traffic splits, by endpoint (what servers route by)."""
    with meta.read() as s:
        return {r.endpoint: info(r).split() for r in running(s)}


def start(
    meta: MetaStore,
    store: ArtifactStore,
    endpoint: str,
    model: str,
    *,
    cache_dir: Path,
    strategy: str | None = None,
    steps: list[float] | None = None,
    interval_s: float | None = None,
    reason: str = "",
) -> DeploymentInfo:
    """Start rolling ``model`` (``NAME@ALIAS``, ``NAME/VERSION`` or a version number) out to
    ``endpoint`` by its rollout policy, overridden by ``strategy``, ``steps``, ``interval_s``.

    The candidate's package is fetched (digest verified), loaded and run on its input example
    first: a version that cannot serve is refused here and traffic stays where it is.

    Raises:
        NotFound: no such endpoint or model version.
        InvalidArgument: the endpoint pins a version, the model is another model, or a policy
            value is malformed.
        Conflict: a deployment is already running on the endpoint, or the candidate is what
            the endpoint serves.
    """
    spec = get_registered(meta, "endpoint", endpoint).spec
    name, alias = _followed(endpoint, spec["model"])
    policy = dict(spec.get("rollout") or Rollout().spec())
    strategy = strategy or policy["strategy"]
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"Strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}.")
    if strategy == "canary":
        plan = (
            check_steps(steps)
            if steps is not None
            else (policy["steps"] if policy["strategy"] == "canary" else Rollout().steps)
        )
    else:
        if steps is not None:
            raise InvalidArgument(f"--steps is for a canary; a {strategy} deployment has no steps.")
        plan = [100.0] if strategy == "blue_green" else [0.0]
    interval = float(interval_s if interval_s is not None else policy["interval_s"])
    if interval <= 0:
        raise InvalidArgument(f"The interval must be positive, got {interval} s.")
    candidate = _resolve_candidate(meta, name, model)
    baseline = registry.resolve(meta, f"models:/{name}@{alias}")
    if candidate.version == baseline.version:
        raise Conflict(
            f"Endpoint '{endpoint}' already serves {name} version {candidate.version} ({alias}); "
            "nothing to deploy."
        )
    _check_servable(store, candidate, cache_dir)
    now = utcnow()
    record = DeploymentRecord(
        id=new_id(),
        endpoint=endpoint,
        model_name=name,
        alias=alias,
        baseline_version=baseline.version,
        candidate_version=candidate.version,
        strategy=strategy,
        steps=plan,
        step=0,
        weight=plan[0],
        interval_s=interval,
        checks=dict(policy["checks"]),
        state=RUNNING,
        reason=reason,
        history=[_entry(now, "started", plan[0], reason=reason)],
        actor="",
        created_at=now,
        step_started_at=now,
        updated_at=now,
        finished_at=None,
    )
    with meta.write() as uow:
        if running(uow.session, endpoint):
            current = running(uow.session, endpoint)[0]
            raise Conflict(
                f"Deployment {current.id} of {name} version {current.candidate_version} is still running on "
                f"endpoint '{endpoint}'; wait for it, or 'gyre rollback {endpoint}' first."
            )
        record.actor = uow.actor
        uow.session.add(record)
        uow.record(
            "deployment.started",
            f"endpoint:{endpoint}",
            _payload(record, strategy=strategy, steps=plan, interval_s=interval, reason=reason),
        )
        uow.session.flush()
        return info(record)


def start_pending_challengers(
    meta: MetaStore, store: ArtifactStore, *, cache_dir: Path
) -> list[DeploymentInfo]:
    """Start the rollouts new challengers ask for: on every endpoint whose policy is
    ``on_challenger="auto"``, a ``challenger`` of its model that differs from what it serves
    and that no deployment on it has tried yet.

    A challenger that cannot serve is recorded as a ``rejected`` deployment with the reason,
    so it is reported once and not retried.
    """
    started = []
    for record in list_registered(meta, "endpoint"):
        policy = record.spec.get("rollout") or {}
        ref = registry.parse_model_uri(f"models:/{record.spec['model']}")
        if policy.get("on_challenger") != "auto" or ref.alias is None or ref.alias == CHALLENGER:
            continue
        try:
            candidate = registry.resolve(meta, f"models:/{ref.name}@{CHALLENGER}")
            serving = registry.resolve(meta, f"models:/{ref.name}@{ref.alias}")
        except NotFound:
            continue
        if candidate.version == serving.version or _tried(meta, record.name, candidate.version):
            continue
        why = f"{ref.name} version {candidate.version} became the challenger"
        try:
            started.append(
                start(
                    meta,
                    store,
                    record.name,
                    f"{ref.name}/{candidate.version}",
                    cache_dir=cache_dir,
                    reason=why,
                )
            )
        except Conflict as exc:  # a deployment is running: the next tick tries again
            log.info("No rollout of %s on '%s' yet: %s", candidate.uri, record.name, exc.message)
        except GyreError as exc:
            log.error("Challenger %s cannot roll out on '%s': %s", candidate.uri, record.name, exc.message)
            _record_refusal(
                meta, record.name, ref.name, ref.alias, serving.version, candidate.version, exc.message
            )
    return started


def _tried(meta: MetaStore, endpoint: str, version: int) -> bool:
    with meta.read() as s:
        q = select(DeploymentRecord.id).where(
            DeploymentRecord.endpoint == endpoint, DeploymentRecord.candidate_version == version
        )
        return s.scalars(q.limit(1)).first() is not None


def _record_refusal(
    meta: MetaStore, endpoint: str, model: str, alias: str, baseline: int, candidate: int, why: str
) -> None:
    now = utcnow()
    with meta.write() as uow:
        r = DeploymentRecord(
            id=new_id(),
            endpoint=endpoint,
            model_name=model,
            alias=alias,
            baseline_version=baseline,
            candidate_version=candidate,
            strategy="none",
            steps=[],
            step=0,
            weight=0.0,
            interval_s=0.0,
            checks={},
            state=REJECTED,
            reason=why,
            history=[_entry(now, REJECTED, 0.0, reason=why)],
            actor=uow.actor,
            created_at=now,
            step_started_at=now,
            updated_at=now,
            finished_at=now,
        )
        uow.session.add(r)
        uow.record("deployment.rejected", f"endpoint:{endpoint}", _payload(r, reason=why))


def tick(meta: MetaStore, lake: Lake, now: datetime | None = None) -> list[DeploymentInfo]:
    """Analyse every running deployment whose step has been held for its interval, and move it:
    next step, promote, complete, or roll back. Returns the deployments that moved."""
    now = now or utcnow()
    with meta.read() as s:
        due = [info(r) for r in running(s) if (now - r.step_started_at).total_seconds() >= r.interval_s]
    moved = []
    for d in due:
        try:
            result = analysis.analyze(meta, lake, d, now)
        except GyreError as exc:
            log.error("Analysing deployment %s on '%s' failed: %s", d.id, d.endpoint, exc.message)
            continue
        after = _decide(meta, d, result, now)
        if after is not None:
            moved.append(after)
    return moved


def _decide(
    meta: MetaStore, d: DeploymentInfo, result: analysis.Analysis, now: datetime
) -> DeploymentInfo | None:
    if result.verdict == analysis.WAIT:
        _update(meta, d, {"reason": result.summary, "updated_at": now}, None)
        return None
    report = result.to_dict()
    if result.verdict == analysis.FAIL:
        state = REJECTED if d.strategy == "shadow" else ROLLED_BACK
        return _finish(meta, d, state, now, f"analysis failed: {result.summary}", report)
    if d.step + 1 < len(d.steps):
        weight = d.steps[d.step + 1]
        changes = {
            "step": d.step + 1,
            "weight": weight,
            "step_started_at": now,
            "updated_at": now,
            "reason": f"step {d.step + 1} passed: {result.summary}",
            "history": [*d.history, _entry(now, "step", weight, analysis=report)],
        }
        return _update(meta, d, changes, ("deployment.step", {"weight": weight, "analysis": report}))
    if d.strategy == "shadow":
        return _finish(meta, d, COMPLETED, now, f"shadow analysis passed: {result.summary}", report)
    return _finish(meta, d, PROMOTED, now, f"promoted: {result.summary}", report)


def rollback(meta: MetaStore, endpoint: str, reason: str = "") -> DeploymentInfo:
    """Send ``endpoint``'s traffic back to its baseline: stop its running deployment, or undo
    its last promotion (the alias moves back to the version it left).

    Raises:
        NotFound: no such endpoint.
        Conflict: nothing to roll back, or the alias has moved since the promotion.
    """
    get_registered(meta, "endpoint", endpoint)
    now = utcnow()
    why = reason or "rolled back by hand"
    with meta.read() as s:
        active = running(s, endpoint)
        last = (
            s.query(DeploymentRecord)
            .filter(DeploymentRecord.endpoint == endpoint)
            .order_by(DeploymentRecord.id.desc())
            .first()
        )
    if active:
        done = _finish(meta, info(active[0]), ROLLED_BACK, now, why, None)
        if done is None:
            raise Conflict(
                f"The deployment on '{endpoint}' changed meanwhile; run 'gyre rollback {endpoint}' again."
            )
        return done
    if last is None or last.state != PROMOTED:
        raise Conflict(
            f"Endpoint '{endpoint}' has no running deployment and no promotion to undo"
            + (f" (its last deployment {last.id} is {last.state})" if last is not None else "")
            + "; to serve another version, 'gyre deploy'."
        )
    d = info(last)
    current = registry.resolve(meta, f"models:/{d.model_name}@{d.alias}").version
    if current != d.candidate_version:
        raise Conflict(
            f"{d.model_name}@{d.alias} has moved to version {current} since deployment {d.id} promoted "
            f"version {d.candidate_version}; move it by hand with 'gyre models alias'."
        )
    done = _finish(meta, d, ROLLED_BACK, now, why, None, revert_alias=True)
    if done is None:
        raise Conflict(
            f"The deployment on '{endpoint}' changed meanwhile; run 'gyre rollback {endpoint}' again."
        )
    return done


# -- transitions ----------------------------------------------------------------------------------


def _finish(
    meta: MetaStore,
    d: DeploymentInfo,
    state: str,
    now: datetime,
    reason: str,
    report: dict[str, Any] | None,
    *,
    revert_alias: bool = False,
) -> DeploymentInfo | None:
    weight = 100.0 if state == PROMOTED else 0.0
    changes = {
        "state": state,
        "weight": weight,
        "reason": reason,
        "updated_at": now,
        "finished_at": now,
        "history": [*d.history, _entry(now, state, weight, reason=reason, analysis=report)],
    }
    payload: dict[str, Any] = {"reason": reason, "analysis": report}

    def alias_move(uow: UnitOfWork) -> None:
        if state == PROMOTED:
            registry.move_alias(
                uow, d.model_name, d.alias, d.candidate_version, f"deployment {d.id}: {reason}"
            )
        elif revert_alias:
            registry.move_alias(
                uow, d.model_name, d.alias, d.baseline_version, f"rollback of deployment {d.id}: {reason}"
            )

    return _update(meta, d, changes, (f"deployment.{state}", payload), alias_move, expect_state=d.state)


def _update(
    meta: MetaStore,
    d: DeploymentInfo,
    changes: dict[str, Any],
    event: tuple[str, dict[str, Any]] | None,
    also: Callable[[UnitOfWork], None] | None = None,
    *,
    expect_state: str = RUNNING,
) -> DeploymentInfo | None:
    """Apply ``changes`` if the deployment is still in the state and step it was decided from."""
    with meta.write() as uow:
        done = uow.session.execute(
            update(DeploymentRecord)
            .where(
                DeploymentRecord.id == d.id,
                DeploymentRecord.state == expect_state,
                DeploymentRecord.step == d.step,
            )
            .values(**changes)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]  # another controller moved it first
            return None
        if also is not None:
            also(uow)
        if event is not None:
            kind, extra = event
            uow.record(
                kind,
                f"endpoint:{d.endpoint}",
                {
                    "deployment": d.id,
                    "endpoint": d.endpoint,
                    "model": d.model_name,
                    "baseline_version": d.baseline_version,
                    "candidate_version": d.candidate_version,
                    "strategy": d.strategy,
                    **extra,
                },
            )
        uow.session.flush()
        record = uow.session.get(DeploymentRecord, d.id)
        assert record is not None
        uow.session.refresh(record)
        return info(record)


# -- helpers --------------------------------------------------------------------------------------


def _followed(endpoint: str, ref: str) -> tuple[str, str]:
    parsed = registry.parse_model_uri(f"models:/{ref}")
    if parsed.alias is None:
        raise InvalidArgument(
            f"Endpoint '{endpoint}' pins {ref}, so there is no alias to promote; make it follow one "
            f"(model='{parsed.name}@champion'), 'gyre apply', then deploy."
        )
    return parsed.name, parsed.alias


def _resolve_candidate(meta: MetaStore, name: str, model: str) -> registry.ModelVersionInfo:
    text = model.strip()
    if text.isdigit():
        text = f"{name}/{text}"
    bare = text.removeprefix("models:/")
    ref = registry.parse_model_uri(f"models:/{bare}")
    if ref.name != name:
        raise InvalidArgument(
            f"The endpoint serves model '{name}', not '{ref.name}'; deploy a version of '{name}' "
            f"(e.g. {name}@challenger or {name}/3)."
        )
    return registry.resolve(meta, f"models:/{bare}")


def _check_servable(store: ArtifactStore, version: registry.ModelVersionInfo, cache_dir: Path) -> None:
    """Fetch, load and run the candidate on its input example, or say why it cannot serve."""
    from gyre.models.package import load_model_package
    from gyre.serving.endpoint import fetch_package
    from gyre.serving.inputs import NUMERIC_KINDS, kind_of_dtype

    try:
        path = fetch_package(store, version.package_digest, cache_dir, version.uri)
        model = load_model_package(path)
        if model.signature is None or not model.signature.inputs:
            raise InvalidArgument("it has no input signature (log it with input_example=)")
        kinds = {kind_of_dtype(c.dtype) for c in model.signature.inputs}
        if kinds <= NUMERIC_KINDS:  # a smoke test: one row of zeros must give one prediction
            out = model.predict_numpy(np.zeros((1, len(model.signature.inputs))))
            if len(out) != 1:
                raise InvalidArgument(f"it returned {len(out)} predictions for one row")
    except GyreError as exc:
        raise InvalidArgument(
            f"{version.uri} cannot be deployed: {exc.message.rstrip('.')}. Traffic stays where it is."
        ) from exc
    except Exception as exc:
        raise InvalidArgument(
            f"{version.uri} cannot be deployed: {type(exc).__name__}: {exc}. Traffic stays where it is."
        ) from exc


def _entry(at: datetime, action: str, weight: float, **extra: Any) -> dict[str, Any]:
    return {"at": at.isoformat(), "action": action, "weight": weight, **{k: v for k, v in extra.items() if v}}


def _payload(r: DeploymentRecord, **extra: Any) -> dict[str, Any]:
    return {
        "deployment": r.id,
        "endpoint": r.endpoint,
        "model": r.model_name,
        "baseline_version": r.baseline_version,
        "candidate_version": r.candidate_version,
        **extra,
    }
