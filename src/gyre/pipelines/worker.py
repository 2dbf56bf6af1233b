"""One attempt of one step, as a worker runs it: read inputs, call the function, store the output.

The same :func:`run_task` runs in a local worker process and in a Ray task. It talks only to
the artifact store (by URL), never to the metadata store: the process that runs the
pipeline creates and ends the runs. Inputs and outputs are cloudpickled blobs, addressed by
their sha256.

A task crosses the process boundary as plain ``pickle`` of :class:`StepTask`; the function and
its arguments are a cloudpickle ``payload`` inside it, unpickled only after the function's
module is importable in the worker (project modules loaded from a file are imported from
that file again).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from gyre.definitions import ensure_project_package
from gyre.pipelines.context import StepContext, enter, leave

_STORES: dict[str, Any] = {}


@dataclass(frozen=True)
class InputRef:
    """In a task's arguments: a stored output (``digest``) indexed by ``path``."""

    digest: str
    path: tuple[Any, ...] = ()


@dataclass
class StepTask:
    """One attempt of a step, ready to send to a worker."""

    step: str
    payload: bytes  # cloudpickle of (fn, args, kwargs), arguments holding InputRef
    store_url: str
    modules: list[tuple[str, str | None]] = field(default_factory=list)
    sys_path: list[str] = field(default_factory=list)
    run_id: str | None = None
    pipeline_run_id: str | None = None
    attempt: int = 1
    timeout_s: float | None = None
    cpus: float | None = None
    memory: int | None = None
    pins: dict[str, int] = field(default_factory=dict)  # dataset versions to read (a reproduction)


@dataclass
class StepResult:
    """What an attempt produced: the stored output, or the error with its traceback."""

    ok: bool
    duration_s: float
    digest: str | None = None
    size: int = 0
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    dataset_versions: dict[str, int] = field(default_factory=dict)
    error_type: str | None = None
    error: str | None = None  # the formatted traceback
    pid: int | None = None


def run_task(task: StepTask) -> StepResult:
    """Run one attempt; an exception of the step becomes a failed result, never an exception."""
    import os

    started = time.perf_counter()
    ctx = StepContext(
        task.step,
        task.run_id,
        task.pipeline_run_id,
        task.attempt,
        pins=dict(task.pins),
        store_url=task.store_url,
    )
    try:
        _prepare(task.modules, task.sys_path)
        fn, args, kwargs = cloudpickle.loads(task.payload)
        store = _store(task.store_url)
        cache: dict[str, Any] = {}
        args = _load(args, store, cache)
        kwargs = _load(kwargs, store, cache)
        token = enter(ctx)
        try:
            started = time.perf_counter()
            value = fn(*args, **kwargs)
            duration = time.perf_counter() - started
        finally:
            leave(token)
        _collect_dataset_versions(value, ctx)
        try:
            data = cloudpickle.dumps(value)
        except Exception as exc:
            raise TypeError(
                f"Step '{task.step}' returned a {type(value).__name__}, which cannot be pickled to store "
                f"it ({exc}); return data (frames, arrays, models, dicts) rather than handles."
            ) from exc
        blob = store.put_bytes(data)
        return StepResult(
            True, duration, blob.digest, blob.size, ctx.metrics, ctx.dataset_versions, pid=os.getpid()
        )
    except (Exception, SystemExit) as exc:  # a step's sys.exit() is its failure, not the worker's
        return StepResult(
            False,
            time.perf_counter() - started,
            metrics=ctx.metrics,
            dataset_versions=ctx.dataset_versions,
            error_type=type(exc).__name__,
            error="".join(traceback.format_exception(exc))[-8000:],
            pid=os.getpid(),
        )


def run_task_bytes(data: bytes) -> bytes:
    """:func:`run_task` on a pickled task, returning the pickled result (the process boundary)."""
    import pickle

    return pickle.dumps(run_task(pickle.loads(data)))


def read_output(store: Any, digest: str, path: tuple[Any, ...] = ()) -> Any:
    """Unpickle a stored output and index into it."""
    value = cloudpickle.loads(store.read_bytes(digest, name=f"step output {digest[:12]}"))
    for p in path:
        value = value[p]
    return value


def _load(value: Any, store: Any, cache: dict[str, Any]) -> Any:
    if isinstance(value, InputRef):
        if value.digest not in cache:
            cache[value.digest] = read_output(store, value.digest)
        out = cache[value.digest]
        for p in value.path:
            out = out[p]
        return out
    if isinstance(value, list):
        return [_load(v, store, cache) for v in value]
    if isinstance(value, tuple):
        return tuple(_load(v, store, cache) for v in value)
    if isinstance(value, dict):
        return {k: _load(v, store, cache) for k, v in value.items()}
    return value


def _store(url: str) -> Any:
    store = _STORES.get(url)
    if store is None:
        from gyre.store import ArtifactStore

        store = _STORES[url] = ArtifactStore(url)
    return store


def _prepare(modules: list[tuple[str, str | None]], sys_path: list[str]) -> None:
    """Make the step's modules importable here as they are in the process that sent it."""
    for entry in sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    ensure_project_package()
    for name, file in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            if not file:
                raise
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"Cannot import module {name} from {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise


def _collect_dataset_versions(value: Any, ctx: StepContext) -> None:
    """A returned training set (anything with a ``dataset_versions`` dict) records its lineage."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple | list) else ()
    for v in (value, *items):
        versions = getattr(v, "dataset_versions", None)
        if isinstance(versions, dict):
            ctx.log_dataset_versions(versions)


def _serve(task_fd: int, result_fd: int) -> None:
    """A local worker process: answer tasks from one pipe on the other until the first closes."""
    import os
    import signal
    from multiprocessing.connection import Connection

    # Ctrl-C belongs to the process running the pipeline, which stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    sys.path[:0] = [os.getcwd()] if os.getcwd() not in sys.path else []
    while True:
        try:
            data = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        results.send_bytes(run_task_bytes(data))


if __name__ == "__main__":
    # Run the imported module's copy, not this __main__ one, so that the classes pickled tasks
    # refer to (gyre.pipelines.worker.InputRef, ...) are the ones the code checks against.
    from gyre.pipelines.worker import _serve as serve

    serve(int(sys.argv[1]), int(sys.argv[2]))
