"""``gyre reproduce RUN``: run a pipeline run again on the data it read, and compare.

A pipeline run records what it needs to be run again: its parameters, each step's code hash,
and the dataset versions its steps read (tags ``gyre.dataset.NAME``, see
:func:`gyre.pipelines.read_dataset` and ``client.get_training_set``). :func:`reproduce`
checks that those versions can still be read, runs the pipeline's current code with the same
parameters and every read pinned to the recorded versions — whatever was ingested since —
with the step cache off (a cache hit would prove nothing), and compares metric by metric.

The reproduction is a tracked run of its own (trigger ``reproduce``, tag ``gyre.reproduces``
naming the original); it logs its model but registers nothing and moves no alias. What
could make it differ is reported next to the figures: step code that changed since (code
hashes), a different git commit or installed packages, parameters that no longer exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.pipelines.cache import DATASET_TAG, OUTPUT_TAG
from gyre.pipelines.concurrency import REPRODUCE
from gyre.pipelines.runner import PIPELINE_TAG, STEP_TAG, run_pipeline

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.pipelines.definition import Pipeline
    from gyre.pipelines.executors import Executor
    from gyre.pipelines.runner import PipelineRun, StepEvent
    from gyre.tracking.entities import RunInfo

REPRODUCES_TAG = "gyre.reproduces"


@dataclass(frozen=True)
class MetricDiff:
    """One metric of the original run beside the reproduction's (None where a run lacks it)."""

    name: str
    original: float | None
    reproduced: float | None

    @property
    def diff(self) -> float | None:
        if self.original is None or self.reproduced is None:
            return None
        if math.isnan(self.original) and math.isnan(self.reproduced):
            return 0.0
        return self.reproduced - self.original

    def same(self, tolerance: float = 0.0) -> bool:
        d = self.diff
        return d is not None and (d == 0.0 or abs(d) <= tolerance)

    def to_dict(self, tolerance: float = 0.0) -> dict[str, Any]:
        return {
            "metric": self.name,
            "original": self.original,
            "reproduced": self.reproduced,
            "diff": self.diff,
            "same": self.same(tolerance),
        }


@dataclass(frozen=True)
class StepDiff:
    """One step: its code hash then and now, and its output digest then and now."""

    step: str
    original_code: str | None
    current_code: str | None
    original_output: str | None
    reproduced_output: str | None

    @property
    def code_changed(self) -> bool:
        return self.original_code != self.current_code

    @property
    def same_output(self) -> bool:
        return self.original_output is not None and self.original_output == self.reproduced_output

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "code_changed": self.code_changed,
            "original_code": self.original_code,
            "current_code": self.current_code,
            "same_output": self.same_output,
            "original_output": self.original_output,
            "reproduced_output": self.reproduced_output,
        }


@dataclass
class Reproduction:
    """The comparison of a pipeline run with its reproduction.

    Attributes:
        original: the run reproduced (the pipeline run, also when a step run's id was given).
        run: the reproduction's result (its ``run_id`` is a tracked run).
        pins: the dataset versions the original read, which the reproduction was made to read.
        read: the dataset versions the reproduction read.
        notes: what could make the two differ, in words (code, environment, parameters, data).
    """

    original: RunInfo
    run: PipelineRun
    pins: dict[str, int]
    read: dict[str, int]
    metrics: list[MetricDiff]
    steps: list[StepDiff]
    notes: list[str] = field(default_factory=list)

    @property
    def code_changed(self) -> bool:
        return any(s.code_changed for s in self.steps)

    def differing(self, tolerance: float = 0.0) -> list[MetricDiff]:
        return [m for m in self.metrics if not m.same(tolerance)]

    def identical(self, tolerance: float = 0.0) -> bool:
        """The reproduction finished and every metric matches (within ``tolerance``)."""
        return self.run.ok and not self.differing(tolerance)

    def to_dict(self, tolerance: float = 0.0) -> dict[str, Any]:
        return {
            "original_run_id": self.original.id,
            "run_id": self.run.run_id,
            "pipeline": self.run.pipeline,
            "status": self.run.status,
            "error": self.run.error,
            "identical": self.identical(tolerance),
            "tolerance": tolerance,
            "code_changed": self.code_changed,
            "params": {k: _text(v) for k, v in self.run.params.items()},
            "datasets": [
                {"dataset": name, "pinned": self.pins.get(name), "read": self.read.get(name)}
                for name in sorted({*self.pins, *self.read})
            ],
            "metrics": [m.to_dict(tolerance) for m in self.metrics],
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
        }


def pipeline_run_of(client: Client, run_id: str) -> RunInfo:
    """The pipeline run ``run_id`` is, or belongs to (a step's run gives its pipeline's).

    Raises:
        NotFound: no such run.
        InvalidArgument: a run no pipeline made (a script's run cannot be re-executed by Gyre).
    """
    run = client.runs.get(run_id)
    if PIPELINE_TAG in run.tags and not run.parent_run_id:
        return run
    if run.parent_run_id:
        parent = client.runs.get(run.parent_run_id)
        if PIPELINE_TAG in parent.tags and not parent.parent_run_id:
            return parent
    pins = _pins(run)
    read = ", ".join(f"{k} v{v}" for k, v in sorted(pins.items()))
    raise InvalidArgument(
        f"Run {run_id} was not made by a pipeline, so Gyre has no code of it to run again "
        f"(it was started by: {run.source or 'unknown'}). "
        + (
            f"It read {read}: rebuild its training set with client.get_training_set(..., versions={pins!r})."
            if pins
            else "It recorded no dataset versions either."
        )
        + " Runs of a @gyre.pipeline can be reproduced: 'gyre pipelines list'."
    )


def check_pins(lake: Any, pins: dict[str, int]) -> None:
    """Check every pinned dataset version can still be read in full.

    Raises:
        NotFound: a dataset, or a version of it, is gone; or some of a version's data files
            were deleted (vacuumed), which Gyre's own ``gyre datasets vacuum`` never does to a
            version's files, but a Delta vacuum after an overwrite, or an erasure, can.
    """
    problems = []
    for name, version in sorted(pins.items()):
        try:
            files = lake.data_files(name, upto=version)
        except NotFound as exc:
            problems.append(f"dataset '{name}' version {version} is gone ({exc.message})")
            continue
        try:
            lake.open_files(name, files)
        except FileNotFoundError as exc:
            problems.append(
                f"dataset '{name}' version {version} was vacuumed: its data file {exc} (and maybe "
                "others) no longer exists"
            )
    if problems:
        raise NotFound(
            "Cannot rebuild the training set the run read: "
            + "; ".join(problems)
            + ". A reproduction would read other data, so none was started."
        )


def reproduce(
    client: Client,
    run_id: str,
    find_pipeline: Callable[[str], Pipeline],
    *,
    compute: str | None = None,
    executor: Executor | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> Reproduction:
    """Run the pipeline run ``run_id`` again on the dataset versions it read, and compare.

    Args:
        find_pipeline: pipeline name -> its current definition (the project's code).
        compute, executor, on_event, on_start: as for :func:`~gyre.pipelines.run_pipeline`.

    Raises:
        NotFound: no such run, its pipeline is no longer declared, or a pinned dataset
            version cannot be read any more (nothing is run then).
        InvalidArgument: the run was not made by a pipeline.
        Conflict: the run has not ended yet.
    """
    from gyre.data.lake import Lake

    original = pipeline_run_of(client, run_id)
    if original.status == "RUNNING":
        raise Conflict(f"Run {original.id} is still running; reproduce it once it has ended.")
    name = original.tags[PIPELINE_TAG]
    try:
        pipeline = find_pipeline(name)
    except NotFound:
        raise NotFound(
            f"Pipeline '{name}' of run {original.id} is no longer declared in the project; check out "
            f"the code it ran ({_commit(original)}) and reproduce from there."
        ) from None
    pins = _pins(original)
    check_pins(Lake(client.settings.store_url), pins)
    notes: list[str] = []
    params = _params(pipeline, original, notes)
    values = pipeline.bind(params, from_text=True)
    graph = pipeline.trace(values)
    steps_before = {
        r.tags.get(STEP_TAG, r.name): r for r in client.runs.list(parent_run_id=original.id, max_results=1000)
    }
    if not pins:
        notes.append(
            "The original run recorded no dataset versions, so the reproduction read the current data."
        )
    result = run_pipeline(
        client,
        pipeline,
        values,
        compute=compute,
        executor=executor,
        trigger=REPRODUCE,
        reason=f"reproduces run {original.id}",
        on_event=on_event,
        tags={REPRODUCES_TAG: original.id},
        pins=pins,
        use_cache=False,
        register=False,
        on_start=on_start,
    )
    after = client.runs.get(result.run_id)
    steps = []
    for node in graph:
        before = steps_before.get(node.name)
        record = result.steps.get(node.name)
        steps.append(
            StepDiff(
                node.name,
                before.tags.get("gyre.code_hash") if before else None,
                node.step.code_hash,
                before.tags.get(OUTPUT_TAG) if before else None,
                record.digest if record else None,
            )
        )
    for gone in sorted(set(steps_before) - {n.name for n in graph}):
        before = steps_before[gone]
        steps.append(
            StepDiff(gone, before.tags.get("gyre.code_hash"), None, before.tags.get(OUTPUT_TAG), None)
        )
    changed = [s.step for s in steps if s.code_changed]
    if changed:
        notes.insert(
            0,
            "The code changed since the original run: step(s) "
            + ", ".join(changed)
            + " now have another code hash (or were added or removed).",
        )
    notes.extend(_environment_notes(original, after))
    read = _pins(after)
    for dataset, version in sorted(read.items()):
        if dataset not in pins:
            notes.append(
                f"The reproduction read dataset '{dataset}' (version {version}), which the original run "
                "did not record."
            )
    keys = sorted({*original.metrics, *after.metrics})
    metrics = [MetricDiff(k, original.metrics.get(k), after.metrics.get(k)) for k in keys]
    return Reproduction(original, result, pins, read, metrics, steps, notes)


def _pins(run: RunInfo) -> dict[str, int]:
    out = {}
    for tag, value in run.tags.items():
        if tag.startswith(DATASET_TAG) and value.lstrip("-").isdigit():
            out[tag[len(DATASET_TAG) :]] = int(value)
    return out


def _params(pipeline: Pipeline, original: RunInfo, notes: list[str]) -> dict[str, str]:
    """The original run's parameter values (as recorded, text) that the pipeline still takes."""
    params = {}
    for key, text in sorted(original.params.items()):
        spec = pipeline.params.get(key)
        if spec is None:
            notes.append(f"Parameter '{key}' ({text}) no longer exists; the reproduction runs without it.")
            continue
        if spec.type is None:
            notes.append(
                f"Parameter '{key}' declares no type, so its recorded text {text!r} is passed as a string."
            )
        params[key] = text
    for key, spec in pipeline.params.items():
        if key not in original.params and not spec.required:
            notes.append(
                f"Parameter '{key}' is new since the original run; it takes its default {spec.default!r}."
            )
    return params


def _environment_notes(original: RunInfo, after: RunInfo) -> list[str]:
    notes = []
    if original.git_commit and after.git_commit and original.git_commit != after.git_commit:
        notes.append(f"The git commit differs: {original.git_commit[:12]} then, {after.git_commit[:12]} now.")
    elif original.git_diff_hash != after.git_diff_hash and (original.git_commit or after.git_commit):
        notes.append("The uncommitted changes in the working tree differ from the original run's.")
    if original.packages_hash and after.packages_hash and original.packages_hash != after.packages_hash:
        notes.append("The installed packages differ from the original run's (packages hash).")
    if original.python_version and after.python_version and original.python_version != after.python_version:
        notes.append(f"Python {original.python_version} then, {after.python_version} now.")
    return notes


def _commit(run: RunInfo) -> str:
    return f"git commit {run.git_commit}" if run.git_commit else "its git commit was not recorded"


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)
