"""What becomes of a pipeline run's model: gates, then registered, held for review, or rejected.

Recorded on the pipeline run as tags, whichever way it goes:

- ``gyre.outcome``: ``registered`` (a new version, alias ``challenger``), ``held`` (a new
  version without alias and with status ``pending_review``, so ``models:/NAME/latest`` skips
  it until ``gyre models approve``), ``rejected`` (a gate failed: nothing registered),
  ``no_model`` (gates passed, no ``"model"`` output) or ``not_registered`` (gates passed, but
  the run registers nothing: a reproduction);
- ``gyre.outcome.reason``, and ``gyre.gates``: every gate's verdict and reason as JSON;
- ``gyre.model``: ``NAME/VERSION`` of the version registered, and ``gyre.review``: ``pending``
  for a held one.

The model is packaged and logged on the pipeline run (artifact ``model``) before the gates
run, so the gates score the very package that would be registered, loaded the same way as
the champion they compare it with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gyre.errors import NotFound
from gyre.models.registry import PENDING_REVIEW, READY
from gyre.pipelines.gates import GateContext, GateResult
from gyre.tracking.entities import ArtifactInfo

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.client.run import ActiveRun
    from gyre.models.loaded import LoadedModel
    from gyre.models.registry import ModelVersionInfo
    from gyre.pipelines.definition import Pipeline

OUTCOME_TAG = "gyre.outcome"
GATES_TAG = "gyre.gates"
MODEL_TAG = "gyre.model"
REVIEW_TAG = "gyre.review"
CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass
class Outcome:
    """The decision on a run's model, with every gate's verdict."""

    decision: str
    reason: str
    gates: list[GateResult] = field(default_factory=list)
    model_name: str | None = None
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "gates": [g.to_dict() for g in self.gates],
            "model": self.model_name,
            "version": self.version,
        }


def conclude(
    client: Client,
    pipeline: Pipeline,
    prun: ActiveRun,
    outputs: Mapping[str, Any],
    metrics: dict[str, float],
    dataset_versions: dict[str, int],
    *,
    register: bool = True,
) -> Outcome:
    """Log the ``"metrics"`` and ``"model"`` outputs, run the gates, register or not; record it all.

    With ``register=False`` the model is logged on the run and gated, but no version is
    created and no alias moves.
    """
    reported = outputs.get("metrics")
    if isinstance(reported, Mapping):
        numbers = {str(k): float(v) for k, v in reported.items() if _is_number(v)}
        if numbers:
            prun.log_metrics(numbers)
            metrics.update(numbers)
    model = outputs.get("model")
    name = pipeline.model_name
    artifact: ArtifactInfo | None = None
    if model is not None:
        logged = prun.log_model(
            model, "model", dataset_versions=dataset_versions, input_example=outputs.get("input_example")
        )
        assert isinstance(logged, ArtifactInfo)  # not registered yet: an artifact of the run
        artifact = logged
    model_uri = f"runs:/{prun.id}/model"

    def candidate() -> LoadedModel | None:
        return client.load_model(model_uri) if artifact is not None else None

    def champion() -> tuple[ModelVersionInfo, LoadedModel] | None:
        uri = f"models:/{name}@{CHAMPION}"
        try:
            info = client.models.resolve(uri)
        except NotFound:
            return None
        return info, client.load_model(uri)

    ctx = GateContext(
        outputs=outputs,
        metrics=metrics,
        label=pipeline.label,
        model_name=name,
        candidate=candidate,
        champion=champion,
    )
    results = [gate.evaluate(ctx) for gate in pipeline.gates]
    failed = [r for r in results if not r.passed]
    if failed:
        outcome = Outcome(
            "rejected",
            "; ".join(f"{r.gate}: {r.reason}" for r in failed) + "; nothing was registered",
            results,
        )
    elif artifact is None:
        outcome = Outcome("no_model", "the pipeline returned no 'model' output; nothing to register", results)
    elif not register:
        passed = f"passed {len(results)} gate(s)" if results else "no gates declared"
        outcome = Outcome(
            "not_registered", f"{passed}; this run registers nothing (the model is logged on it)", results
        )
    else:
        version = _register(
            client,
            prun,
            name,
            artifact.digest,
            model_uri,
            metrics,
            dataset_versions,
            PENDING_REVIEW if pipeline.review else READY,
        )
        _record_reference(client, version, outputs.get("reference", outputs.get("train")))
        passed = f"passed {len(results)} gate(s)" if results else "no gates declared"
        if pipeline.review:
            outcome = Outcome(
                "held",
                f"{passed}; version {version.version} waits for "
                f"'gyre models approve {name} {version.version}'",
                results,
                name,
                version.version,
            )
        else:
            client.models.set_alias(
                name, CHALLENGER, version.version, f"pipeline '{pipeline.name}' run {prun.id}: {passed}"
            )
            outcome = Outcome(
                "registered",
                f"{passed}; version {version.version} is {CHALLENGER}",
                results,
                name,
                version.version,
            )
    tags = {
        OUTCOME_TAG: outcome.decision,
        "gyre.outcome.reason": outcome.reason[:4000],
        GATES_TAG: json.dumps([r.to_dict() for r in results], default=str),
    }
    if outcome.version is not None:
        tags[MODEL_TAG] = f"{name}/{outcome.version}"
    if outcome.decision == "held":
        tags[REVIEW_TAG] = "pending"
    prun.set_tags(tags)
    return outcome


def _register(
    client: Client,
    prun: ActiveRun,
    name: str,
    digest: str,
    model_uri: str,
    metrics: Mapping[str, float],
    dataset_versions: Mapping[str, int],
    status: str,
) -> ModelVersionInfo:
    from gyre.models.package import read_model_meta

    meta = read_model_meta(client.model_path(model_uri))
    return client.backend.create_model_version(
        name,
        package_digest=digest,
        flavor=meta.flavor,
        signature=meta.signature.to_dict() if meta.signature else None,
        metrics=dict(metrics),
        dataset_versions=dict(dataset_versions),
        run_id=prun.id,
        artifact_path="model",
        status=status,
    )


def _record_reference(client: Client, version: ModelVersionInfo, train: Any) -> None:
    """Drift monitoring compares live traffic with the data the pipeline names (``"reference"``,
    else ``"train"``): its model input columns, and the version's predictions on them."""
    names = [c["name"] for c in (version.signature or {}).get("inputs", [])]
    if train is None or not names:
        return
    if hasattr(train, "column_names") and hasattr(train, "select"):  # pyarrow
        data = train.select(names) if set(names) <= set(train.column_names) else None
    elif hasattr(train, "iloc"):  # pandas
        data = train[names] if set(names) <= set(train.columns) else None
    elif isinstance(train, Mapping):
        data = {n: train[n] for n in names} if set(names) <= set(train) else None
    else:
        data = None
    if data is not None:
        client.models.record_reference(version.name, version.version, data)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
