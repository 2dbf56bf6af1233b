"""``ActiveRun``: the handle a training script logs through.

Metric points are buffered in memory and written in batches by a background thread:
at most ``flush_interval`` seconds (default 1 s) or ``flush_points`` points (default 1,000)
after they were logged, whichever comes first, and always on :meth:`ActiveRun.flush` and
when the run ends. A point is durable once ``flush()`` has returned; points still in the
buffer when the process is killed are lost, everything flushed before survives.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gyre.errors import Conflict
from gyre.tracking.entities import ArtifactInfo, RunInfo

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.models.registry import ModelVersionInfo

FLUSH_INTERVAL_S = 1.0
FLUSH_POINTS = 1000


class ActiveRun:
    """A running run. Use as a context manager: an exception marks it FAILED and re-raises."""

    def __init__(
        self,
        client: Client,
        info: RunInfo,
        *,
        flush_interval: float = FLUSH_INTERVAL_S,
        flush_points: int = FLUSH_POINTS,
    ) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self._buffer: list[tuple[str, float, int, int]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._flush_interval = flush_interval
        self._flush_points = flush_points
        self.dataset_versions: dict[str, int] = {}
        self._flusher = threading.Thread(target=self._flush_loop, name=f"gyre-flush-{self.id}", daemon=True)
        self._flusher.start()
        _LIVE_RUNS.add(self)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.info.experiment!r}, name={self.info.name!r})"

    # -- logging ------------------------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Record one point (buffered; see the module docstring for when it is written)."""
        self._check_open()
        point = (key, value, 0 if step is None else step, timestamp_ms or time.time_ns() // 1_000_000)
        with self._lock:
            self._buffer.append(point)
            full = len(self._buffer) >= self._flush_points
        if full:
            self._wake.set()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record several metrics at the same step."""
        self._check_open()
        ts = time.time_ns() // 1_000_000
        s = 0 if step is None else step
        with self._lock:
            self._buffer.extend((k, v, s, ts) for k, v in metrics.items())
            full = len(self._buffer) >= self._flush_points
        if full:
            self._wake.set()

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        """Write params now (not buffered). A param is written once per run."""
        self._check_open()
        self.client.backend.log_batch(self.id, (), params=params)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._check_open()
        self.client.backend.log_batch(self.id, (), tags=tags)

    def log_dataset_versions(self, versions: dict[str, int]) -> None:
        """Record the dataset versions this run read (tags ``gyre.dataset.NAME``), for lineage.

        ``log_model`` records them on the model version unless given others.
        """
        self.dataset_versions.update(versions)
        self.set_tags({f"gyre.dataset.{name}": str(v) for name, v in versions.items()})

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> ArtifactInfo:
        """Upload a file or a directory and record it on this run."""
        self._check_open()
        local = Path(local_path)
        return self.client.upload_artifact(self.id, local, artifact_path or local.name)

    def log_model(
        self,
        model: Any,
        artifact_path: str = "model",
        *,
        register_as: str | None = None,
        signature: Any = None,
        input_example: Any = None,
        flavor: str | None = None,
        code_paths: tuple[str, ...] | list[str] = (),
        requirements: list[str] | None = None,
        feature_refs: tuple[str, ...] | list[str] = (),
        dataset_versions: dict[str, Any] | None = None,
        predict_method: str | None = None,
        reference_data: Any = None,
    ) -> ModelVersionInfo | ArtifactInfo:
        """Package ``model`` (flavor detected unless given), log it, and register it if asked.

        Returns the new :class:`ModelVersionInfo` when ``register_as`` is given, else the artifact.
        The package records this run's id and latest metrics. ``reference_data`` (the training
        features, a DataFrame or Arrow table) is profiled with the model's predictions on it as
        the reference drift monitoring compares live traffic with.
        """
        from gyre.models.package import save_model_package

        self._check_open()
        self.flush()
        metrics = self.client.backend.get_run(self.id).metrics
        with tempfile.TemporaryDirectory(prefix="gyre-model-") as tmp:
            pkg = Path(tmp) / "model"
            meta = save_model_package(
                model,
                pkg,
                flavor=flavor,
                signature=signature,
                input_example=input_example,
                code_paths=tuple(code_paths),
                requirements=requirements,
                feature_refs=tuple(feature_refs),
                metrics=metrics,
                run_id=self.id,
                dataset_versions=dataset_versions if dataset_versions is not None else self.dataset_versions,
                predict_method=predict_method,
            )
            artifact = self.client.upload_artifact(self.id, pkg, artifact_path)
        if register_as is None:
            return artifact
        mv = self.client.backend.create_model_version(
            register_as,
            package_digest=artifact.digest,
            flavor=meta.flavor,
            signature=meta.signature.to_dict() if meta.signature else None,
            metrics=metrics,
            dataset_versions=dataset_versions
            if dataset_versions is not None
            else dict(self.dataset_versions),
            run_id=self.id,
            artifact_path=artifact_path,
        )
        if reference_data is not None or mv.dataset_versions:
            # The reference monitoring compares live traffic with: the training data's profile
            # and the model's predictions on it (or the pinned dataset versions' profiles).
            from gyre.monitoring.reference import record_reference_for

            record_reference_for(self.client, mv, data=reference_data)
        return mv

    # -- buffering -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every buffered point now; raises if an earlier background write failed."""
        self._raise_background_error()
        self._write_buffer()
        self._raise_background_error()

    def _write_buffer(self) -> None:
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                self.client.backend.log_batch(self.id, batch)
            except BaseException:
                with self._lock:  # keep the points so a later flush can retry them
                    self._buffer[:0] = batch
                raise

    def _flush_loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self._write_buffer()
            except BaseException as exc:  # surfaced to the caller on the next flush/end
                self._error = exc
                return

    def _raise_background_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # -- lifecycle ---------------------------------------------------------------------------

    def end(self, status: str = "FINISHED", error: str | None = None) -> RunInfo:
        """Flush and end the run as FINISHED, FAILED or KILLED."""
        if self._closed:
            raise Conflict(f"Run {self.id} has already ended.")
        self._stop_flusher()
        try:
            self.flush()
        finally:
            self._closed = True
            _LIVE_RUNS.discard(self)
            self.info = self.client.backend.finish_run(self.id, status, error)
        return self.info

    def _stop_flusher(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._flusher.is_alive() and threading.current_thread() is not self._flusher:
            self._flusher.join()

    def __enter__(self) -> ActiveRun:
        from gyre.client.fluent import _push_run

        self._token = _push_run(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from gyre.client.fluent import _pop_run

        _pop_run(self._token)
        if self._closed:
            return
        if exc is None:
            self.end("FINISHED")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("KILLED", "KeyboardInterrupt")
        else:
            summary = "".join(traceback.format_exception(exc_type, exc, tb))[-4000:]
            self.end("FAILED", summary)

    def _check_open(self) -> None:
        if self._closed:
            raise Conflict(f"Run {self.id} has ended; start a new run to log more.")


_LIVE_RUNS: weakref.WeakSet[ActiveRun] = weakref.WeakSet()


@atexit.register
def _flush_live_runs() -> None:
    """At interpreter exit, write what runs still buffer (they stay RUNNING unless ended)."""
    for run in list(_LIVE_RUNS):
        try:
            run._stop_flusher()
            run._write_buffer()
        except Exception:  # the process is exiting; a store that is gone cannot be helped
            pass
