"""Running a pipeline: the pipeline run, a child run per step, caching, retries, then the gates.

:func:`run_pipeline` traces the graph with the run's parameters and walks it: a step starts
when its inputs are ready, served from the cache when its key is known, else submitted to
the executor, so independent steps overlap. A failed attempt is retried only if the step
declares ``retries``, after ``backoff_s * 2**(n-1)`` seconds. The first step that fails for
good fails the pipeline run (its traceback on the step's run and the pipeline's), stops
the steps still running, and nothing is registered. When every step succeeded the gates
decide what becomes of the ``"model"`` result (:mod:`gyre.pipelines.outcome`).

Another process can cancel a run by ending it (:func:`cancel_run`); the runner notices
within a second, starts no further step and, when it owns its executor, stops the running
ones (their worker processes are killed). While it runs, the runner writes a heartbeat tag
every ``HEARTBEAT_S`` seconds, so a run whose process died (``kill -9``, a lost machine) can
be told from one that is still working (:mod:`gyre.pipelines.concurrency`).

A cached step output is reused only while the dataset versions it read (tags
``gyre.dataset.*``) are still those a fresh run would read: the latest, or the pinned ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle

from gyre.errors import Conflict, GyreError, InvalidArgument, NotFound
from gyre.ids import utcnow
from gyre.pipelines.cache import DATASET_TAG, KEY_TAG, OUTPUT_TAG, cache_key, lookup
from gyre.pipelines.executors import Executor, StepCancelled, open_executor
from gyre.pipelines.graph import Graph, Node, Ref, iter_refs, resolve
from gyre.pipelines.worker import InputRef, StepResult, StepTask, read_output
from gyre.tracking import service as tracking

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.client.run import ActiveRun
    from gyre.pipelines.definition import Pipeline
    from gyre.pipelines.outcome import Outcome

log = logging.getLogger("gyre.pipelines")

CANCEL_CHECK_S = 1.0
HEARTBEAT_S = 30.0
PIPELINE_TAG = "gyre.pipeline"
TRIGGER_TAG = "gyre.pipeline.trigger"
REASON_TAG = "gyre.pipeline.reason"
HEARTBEAT_TAG = "gyre.heartbeat"
STEP_TAG = "gyre.step"
CACHE_TAG = "gyre.cache"


@dataclass
class StepEvent:
    """Progress of one step: started, cached, finished, retrying, failed or cancelled."""

    step: str
    kind: str
    attempt: int = 1
    duration_s: float | None = None
    message: str = ""
    run_id: str | None = None


@dataclass
class StepRecord:
    """How a step of a run went. ``status``: pending (never started), finished, cached, failed, cancelled."""

    name: str
    status: str = "pending"
    run_id: str | None = None
    attempts: int = 0
    duration_s: float | None = None
    cache_key: str | None = None
    digest: str | None = None
    error: str | None = None


@dataclass
class PipelineRun:
    """The result of :func:`run_pipeline`.

    Attributes:
        status: the pipeline run's status, FINISHED, FAILED or KILLED.
        result: the pipeline function's return value with real values (None if a step failed).
        outcome: what the gates decided (None if a step failed).
        error: why the run failed.
    """

    pipeline: str
    run_id: str
    status: str
    params: dict[str, Any]
    steps: dict[str, StepRecord]
    result: Any = None
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "params": {k: _jsonish(v) for k, v in self.params.items()},
            "steps": [s.__dict__ for s in self.steps.values()],
            "outcome": self.outcome.to_dict() if self.outcome else None,
            "error": self.error,
        }


def run_pipeline(
    client: Client,
    pipeline: Pipeline,
    params: Mapping[str, Any] | None = None,
    *,
    compute: str | None = None,
    executor: Executor | None = None,
    trigger: str = "manual",
    reason: str = "",
    params_from_text: bool = False,
    on_event: Callable[[StepEvent], None] | None = None,
    tags: Mapping[str, str] | None = None,
    pins: Mapping[str, int] | None = None,
    use_cache: bool = True,
    register: bool = True,
    on_start: Callable[[str], None] | None = None,
) -> PipelineRun:
    """Run ``pipeline`` and wait for it; returns how it went (a failed step does not raise).

    Args:
        client: where runs, artifacts and models are recorded (the project's local stores:
            workers read and write the artifact store directly).
        params: parameter values (strings parsed to the declared types if ``params_from_text``).
        compute: executor URL, default ``[backends] compute``; ignored if ``executor`` is given.
        executor: an executor to use (and not close) instead of opening one.
        trigger, reason: what started the run (recorded as tags).
        on_event: called in this thread with each :class:`StepEvent`.
        tags: more tags for the pipeline run (e.g. the alert that caused it).
        pins: dataset name -> version the steps read instead of the latest (a reproduction).
        use_cache: reuse cached step outputs (off: every step runs again).
        register: register a model that passed the gates (off: it is only logged on the run).
        on_start: called with the pipeline run's id once it is recorded, before any step runs.

    Raises:
        InvalidArgument: bad parameters or graph (before anything runs or is recorded).
    """
    values = pipeline.bind(params, from_text=params_from_text)
    graph = pipeline.trace(values)
    store = client.backend.blobs
    store_url = getattr(store, "url", None)
    if not store_url or getattr(client.backend, "meta", None) is None:
        raise InvalidArgument(
            "Pipelines read and write step outputs in the artifact store, and record step runs in "
            "the metadata store, directly: connect to the project's stores (unset GYRE_SERVER_URL) "
            "rather than to a server."
        )
    own = executor is None
    if executor is None:
        executor = open_executor(compute or client.settings.get("backends", "compute"))
    run_tags = {
        PIPELINE_TAG: pipeline.name,
        TRIGGER_TAG: trigger,
        HEARTBEAT_TAG: utcnow().isoformat(),
        "gyre.pipeline.graph": json.dumps([[n.name, list(n.inputs)] for n in graph]),
        **dict(tags or {}),
    }
    if reason:
        run_tags[REASON_TAG] = reason[:4000]
    prun = client.start_run(pipeline.experiment, pipeline.name, tags=run_tags)
    execution = _Execution(
        client, pipeline, graph, prun, executor, own, store, store_url, on_event, pins or {}, use_cache
    )
    heartbeat = _Heartbeat(client, prun.id)
    try:
        with prun:
            if on_start is not None:
                on_start(prun.id)
            prun.log_params({k: _param_text(v) for k, v in values.items()})
            failed = execution.run()
            if own:
                executor.close(cancel=failed is not None)
            if execution.cancelled:
                return execution.finish("KILLED", "cancelled while running", values)
            if failed is not None:
                record = execution.records[failed]
                message = f"Step '{failed}' failed after {record.attempts} attempt(s):\n{record.error or ''}"
                prun.end("FAILED", message[-8000:])
                return execution.finish("FAILED", message, values)
            result = resolve(graph.result, _Outputs(store, execution.records))
            outcome = _conclude(client, pipeline, prun, result, execution, register)
            prun.end("FINISHED")
            run = execution.finish("FINISHED", None, values)
            run.result, run.outcome = result, outcome
            return run
    except BaseException:
        if own:
            executor.close(cancel=True)
        execution.abandon()
        raise
    finally:
        heartbeat.stop()


def cancel_run(client: Client, run_id: str, reason: str = "cancelled") -> None:
    """Ask a running pipeline run to stop: it is ended KILLED at once.

    Its runner, in whatever process, notices within ``CANCEL_CHECK_S``, starts no further
    step, and stops the running ones if it owns its executor (worker processes killed, Ray
    tasks force-cancelled); with an executor it was lent, they run to their end and their
    outputs are discarded. Nothing is registered for a cancelled run.

    Raises:
        Conflict: the run already ended.
    """
    client.runs.finish(run_id, "KILLED", reason)


def pipeline_runs(
    client: Client, name: str, *, status: str | None = None, max_results: int = 50
) -> list[Any]:
    """Runs of pipeline ``name``, newest first (``status="RUNNING"`` for the concurrency policy)."""
    flt = f"tags.`{PIPELINE_TAG}` = '{name}'" + (f" and status = '{status}'" if status else "")
    return client.runs.list(filter=flt, max_results=max_results)


class _Execution:
    """The state of one run's walk over its graph."""

    def __init__(
        self,
        client: Client,
        pipeline: Pipeline,
        graph: Graph,
        prun: ActiveRun,
        executor: Executor,
        own_executor: bool,
        store: Any,
        store_url: str,
        on_event: Callable[[StepEvent], None] | None,
        pins: Mapping[str, int],
        use_cache: bool,
    ) -> None:
        self.client = client
        self.meta: Any = getattr(client.backend, "meta", None)
        self.own_executor = own_executor
        self.pipeline = pipeline
        self.graph = graph
        self.prun = prun
        self.executor = executor
        self.store = store
        self.store_url = store_url
        self.on_event = on_event
        self.records = {n.name: StepRecord(n.name) for n in graph}
        self.step_runs: dict[str, _StepRun] = {}
        self.running: dict[Future[StepResult], tuple[Node, int]] = {}
        self.retry_at: dict[str, tuple[float, int]] = {}
        self.metrics: dict[str, float] = {}
        self.dataset_versions: dict[str, int] = {}
        self.cancelled = False  # the pipeline run was ended by someone else
        self.stopping = False  # a step failed for good, or the run was cancelled: start nothing new
        self.pins = {str(k): int(v) for k, v in pins.items()}
        self.use_cache = use_cache
        self._prun_points: list[tuple[str, float, int, int]] = []  # cached steps' metrics, for the run
        self._prun_tags: dict[str, str] = {}
        self._ended: list[tracking.EndedRun] = []  # cached steps' runs, not written yet
        self._modules = _modules_for(graph)
        self._lake: Any = None
        self._versions: dict[str, int | None] = {}

    # -- the walk -------------------------------------------------------------------------

    def run(self) -> str | None:
        """Run every step; returns the name of the step that failed for good, if one did."""
        failed: str | None = None
        last_check = time.monotonic()
        while True:
            if not self.stopping:
                self._start_ready()
            if not self.running and (self.stopping or not self.retry_at):
                break
            timeout = CANCEL_CHECK_S
            if self.retry_at:
                timeout = max(0.0, min(timeout, min(t for t, _ in self.retry_at.values()) - time.monotonic()))
            done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                node, attempt = self.running.pop(future)
                if not self._finish_attempt(node, attempt, future) and failed is None:
                    failed = node.name
                    self._stop()
            if time.monotonic() - last_check >= CANCEL_CHECK_S and not self.cancelled:
                last_check = time.monotonic()
                if self.client.runs.get(self.prun.id).status != "RUNNING":
                    self.cancelled = True
                    self._stop()
        return failed

    def _start_ready(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for node in self.graph:
                rec = self.records[node.name]
                if rec.status == "retrying":
                    due, attempt = self.retry_at[node.name]
                    if due <= time.monotonic():
                        del self.retry_at[node.name]
                        self._submit(node, attempt)
                elif rec.status == "pending" and all(
                    self.records[d].status in ("finished", "cached") for d in node.inputs
                ):
                    progressed |= self._start(node)  # a cache hit may make dependents ready
        self._flush_pipeline_log()

    def _start(self, node: Node) -> bool:
        """Serve ``node`` from the cache (True) or submit its first attempt (False)."""
        rec = self.records[node.name]
        digests = {r.name: r.digest for r in self.records.values() if r.digest}
        rec.cache_key = cache_key(node, digests)
        caching = node.step.options.cache and self.use_cache
        hit = lookup(self.client, self.store, rec.cache_key, self._version_to_read) if caching else None
        tags = {
            STEP_TAG: node.name,
            KEY_TAG: rec.cache_key,
            "gyre.code_hash": node.step.code_hash,
            CACHE_TAG: "hit" if hit else ("miss" if caching else "off"),
            **_input_tags(node, digests),
        }
        if hit is not None:
            source, digest = hit
            tags.update({OUTPUT_TAG: digest, "gyre.cache.source": source.id})
            tags.update({k: v for k, v in source.tags.items() if k.startswith(DATASET_TAG)})
        params = _step_params(node)
        if hit is None:
            run = _StepRun.start(self.client, self.pipeline.experiment, node.name, self.prun.id, tags)
            rec.run_id = run.id
            if params:
                run.log(params=params)
            self.step_runs[node.name] = run
            self._submit(node, 1)
            return False
        source, digest = hit
        now_ms = time.time_ns() // 1_000_000
        points = [(k, v, 0, now_ms) for k, v in source.metrics.items()]
        # Recorded with the other hits of this pass in one transaction (_flush_pipeline_log):
        # a cached step costs its bookkeeping, nothing else.
        ended = tracking.EndedRun(node.name, self.prun.id, tags=dict(tags), params=params, metrics=points)
        self._ended.append(ended)
        rec.run_id = ended.id
        self._add_metrics(source.metrics)
        self._prun_points.extend(points)
        self._add_dataset_versions(
            {k[len(DATASET_TAG) :]: int(v) for k, v in source.tags.items() if k.startswith(DATASET_TAG)}
        )
        rec.status, rec.digest, rec.duration_s, rec.attempts = "cached", digest, 0.0, 0
        self._emit(StepEvent(node.name, "cached", 0, 0.0, f"from run {source.id}", rec.run_id))
        return True

    def _submit(self, node: Node, attempt: int) -> None:
        rec = self.records[node.name]
        rec.status, rec.attempts = "running", attempt
        digests = {r.name: r.digest for r in self.records.values() if r.digest}
        opts = node.step.options
        payload = cloudpickle.dumps(
            (node.step.fn, _task_args(node.args, digests), _task_args(node.kwargs, digests))
        )
        task = StepTask(
            node.name,
            payload,
            self.store_url,
            self._modules,
            list(sys.path),
            rec.run_id,
            self.prun.id,
            attempt,
            opts.timeout_s,
            opts.cpus,
            opts.memory,
            self.pins,
        )
        self.running[self.executor.submit(task)] = (node, attempt)
        self._emit(StepEvent(node.name, "started", attempt, run_id=rec.run_id))

    def _finish_attempt(self, node: Node, attempt: int, future: Future[StepResult]) -> bool:
        """Record one attempt's end; False if the step has failed for good."""
        rec = self.records[node.name]
        run = self.step_runs[node.name]
        try:
            result: StepResult | None = future.result()
            error = None
        except GyreError as exc:
            result, error = None, exc
        if result is not None and result.metrics:
            self.client.runs.log_batch(run.id, result.metrics)
            self._add_metrics({k: v for k, v, _, _ in result.metrics})
            with contextlib.suppress(Conflict):  # the pipeline run was cancelled meanwhile
                self.client.runs.log_batch(self.prun.id, result.metrics)
        if result is not None and result.ok:
            self._add_dataset_versions(result.dataset_versions)
            self._flush_pipeline_log()
            run.log(
                tags={
                    OUTPUT_TAG: result.digest,
                    "gyre.output.size": result.size,
                    "gyre.attempts": attempt,
                    **{f"{DATASET_TAG}{k}": v for k, v in result.dataset_versions.items()},
                }
            )
            run.end("FINISHED")
            rec.status, rec.digest, rec.duration_s = "finished", result.digest, result.duration_s
            self._emit(StepEvent(node.name, "finished", attempt, result.duration_s, run_id=run.id))
            return True
        if result is not None:
            message = result.error or f"{result.error_type}"
            short = _last_line(message)
        else:
            message = short = f"{type(error).__name__}: {error}"
        rec.error = message
        cancelled = isinstance(error, StepCancelled)
        retries = node.step.options.retries
        if not cancelled and attempt <= retries and not self.stopping:
            delay = node.step.options.backoff_s * 2 ** (attempt - 1)
            run.log(tags={f"gyre.attempt.{attempt}.error": short[:1000]})
            self.retry_at[node.name] = (time.monotonic() + delay, attempt + 1)
            rec.status = "retrying"
            self._emit(
                StepEvent(
                    node.name,
                    "retrying",
                    attempt,
                    message=f"{short}; retry {attempt}/{retries} in {delay:g}s",
                )
            )
            return True
        run.log(tags={"gyre.attempts": attempt, "gyre.error_type": _error_type(result, error)})
        status = "KILLED" if cancelled or self.cancelled else "FAILED"
        with contextlib.suppress(Conflict):
            run.end(status, message[-8000:])
        rec.status = "cancelled" if status == "KILLED" else "failed"
        self._emit(StepEvent(node.name, rec.status, attempt, message=short, run_id=run.id))
        return cancelled or self.cancelled  # a stopped step is not the cause of the failure

    def _stop(self) -> None:
        """Start nothing more, and stop the running steps (if the executor is ours to stop)."""
        self.stopping = True
        self.retry_at.clear()
        if self.own_executor:
            self.executor.close(cancel=True)  # running futures fail with StepCancelled

    def finish(self, status: str, error: str | None, values: Mapping[str, Any]) -> PipelineRun:
        if status == "KILLED":
            with contextlib.suppress(Conflict):
                self.prun.end("KILLED", error)
        for name, rec in self.records.items():
            run = self.step_runs.get(name)
            if run is not None and rec.status == "retrying":  # waiting for a retry when the run ended
                with contextlib.suppress(Conflict):
                    run.end("KILLED", "the pipeline run ended before this step's retry")
                rec.status = "cancelled"
        return PipelineRun(self.pipeline.name, self.prun.id, status, dict(values), self.records, error=error)

    def abandon(self) -> None:
        """After an unexpected error (or Ctrl-C): end the step runs still open."""
        for run in self.step_runs.values():
            with contextlib.suppress(Exception):
                run.end("KILLED", "the pipeline run was interrupted")

    # -- helpers ----------------------------------------------------------------------------

    def _version_to_read(self, dataset: str) -> int | None:
        """The version of ``dataset`` a step of this run would read now (None: it is gone)."""
        if dataset in self.pins:
            return self.pins[dataset]
        if dataset not in self._versions:
            if self._lake is None:
                from gyre.data.lake import Lake

                self._lake = Lake(self.store_url)
            try:
                self._versions[dataset] = self._lake.version(dataset)
            except NotFound:
                self._versions[dataset] = None
        return self._versions[dataset]

    def _add_metrics(self, metrics: Mapping[str, float]) -> None:
        self.metrics.update(metrics)

    def _add_dataset_versions(self, versions: Mapping[str, int]) -> None:
        if versions:
            self.dataset_versions.update(versions)
            self.prun.dataset_versions.update(versions)
            self._prun_tags.update({f"{DATASET_TAG}{k}": str(v) for k, v in versions.items()})

    def _flush_pipeline_log(self) -> None:
        """Write the cached steps' runs, and what steps added to the pipeline run, at once."""
        if self._ended:
            ended, self._ended = self._ended, []
            tracking.record_runs(self.meta, self.pipeline.experiment, ended)
        if self._prun_points or self._prun_tags:
            points, tags = self._prun_points, self._prun_tags
            self._prun_points, self._prun_tags = [], {}
            with contextlib.suppress(Conflict):  # the pipeline run was cancelled meanwhile
                self.client.runs.log_batch(self.prun.id, points, tags=tags)

    def _emit(self, event: StepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


class _StepRun:
    """A step's run, written straight through the backend.

    Not an :class:`ActiveRun`: a step logs through its attempt's result, never live, so a
    buffering thread per step would only cost time (about 4 ms a step, a cached one's most).
    """

    def __init__(self, client: Client, run_id: str) -> None:
        self._backend = client.backend
        self.id = run_id

    @classmethod
    def start(
        cls, client: Client, experiment: str, name: str, parent_run_id: str, tags: Mapping[str, Any]
    ) -> _StepRun:
        info = client.backend.create_run(
            experiment, name=name, parent_run_id=parent_run_id, tags={k: str(v) for k, v in tags.items()}
        )
        return cls(client, info.id)

    def log(
        self,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        if metrics or params or tags:
            self._backend.log_batch(self.id, metrics or (), dict(params or {}), dict(tags or {}))

    def end(self, status: str, error: str | None = None) -> None:
        self._backend.finish_run(self.id, status, error)


class _Outputs(Mapping[str, Any]):
    """Step outputs by name, read from the store on first use."""

    def __init__(self, store: Any, records: Mapping[str, StepRecord]) -> None:
        self._store = store
        self._records = records
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._cache:
            digest = self._records[name].digest
            if digest is None:
                raise KeyError(name)
            self._cache[name] = read_output(self._store, digest)
        return self._cache[name]

    def __iter__(self) -> Any:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def _conclude(
    client: Client, pipeline: Pipeline, prun: ActiveRun, result: Any, execution: _Execution, register: bool
) -> Outcome:
    from gyre.pipelines.outcome import conclude

    outputs = result if isinstance(result, dict) else {"result": result}
    return conclude(
        client,
        pipeline,
        prun,
        outputs,
        dict(execution.metrics),
        dict(execution.dataset_versions),
        register=register,
    )


class _Heartbeat:
    """Writes the run's heartbeat tag every ``HEARTBEAT_S`` seconds until stopped or the run ends."""

    def __init__(self, client: Client, run_id: str) -> None:
        self._client, self._run_id = client, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"gyre-heartbeat-{run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._client.runs.log_batch(self._run_id, tags={HEARTBEAT_TAG: utcnow().isoformat()})
            except Conflict:  # the run ended (or was cancelled): nothing left to vouch for
                return
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("pipeline run %s: heartbeat not written: %s", self._run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _task_args(value: Any, digests: Mapping[str, str]) -> Any:
    if isinstance(value, Ref):
        return InputRef(digests[value.node], value.path)
    if isinstance(value, list):
        return [_task_args(v, digests) for v in value]
    if isinstance(value, tuple):
        return tuple(_task_args(v, digests) for v in value)
    if isinstance(value, dict):
        return {k: _task_args(v, digests) for k, v in value.items()}
    return value


def _step_params(node: Node) -> dict[str, str]:
    """A step's arguments that are not other steps' outputs, as run params."""
    return {k: _param_text(v) for k, v in node.arguments.items() if not list(iter_refs(v))}


def _input_tags(node: Node, digests: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in node.arguments.items():
        refs = list(iter_refs(v))
        if refs:
            out[f"gyre.input.{k}"] = ", ".join(f"{r.label()}@{digests[r.node][:12]}" for r in refs)
    return out


def _modules_for(graph: Graph) -> list[tuple[str, str | None]]:
    """The modules a worker must import before unpickling the steps: theirs, and the project's."""
    names = {getattr(n.step.fn, "__module__", None) for n in graph}
    names |= {m for m in sys.modules if m.startswith("gyre_project.")}
    out = []
    for name in sorted(n for n in names if n and n != "__main__"):
        module = sys.modules.get(name)
        out.append((name, getattr(module, "__file__", None)))
    return out


def _param_text(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else repr(value)
        if not isinstance(value, int | float | bool)
        else str(value)
    )
    return text if len(text) <= 500 else text[:499] + "…"


def _jsonish(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


def _error_type(result: StepResult | None, error: BaseException | None) -> str:
    if result is not None:
        return result.error_type or "Error"
    return type(error).__name__
