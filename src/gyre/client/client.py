"""``gyre.connect()``: the explicit client, over local stores or a Gyre server.

One operation has one name here, in the REST API and in the CLI: ``client.runs.list()`` is
``GET /api/v1/runs`` is ``gyre runs list``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gyre.client.backend import Backend
from gyre.client.run import ActiveRun
from gyre.config import Settings, load_settings
from gyre.errors import InvalidArgument
from gyre.models.registry import AliasMove, ModelVersionInfo, RegisteredModelInfo, parse_model_uri
from gyre.tracking.entities import ArtifactInfo, ExperimentInfo, MetricPoint, RunInfo

if TYPE_CHECKING:
    from gyre.features.offline import TrainingSet
    from gyre.features.store import FeatureStore


def connect(url: str | None = None, *, token: str | None = None, settings: Settings | None = None) -> Client:
    """Open a client.

    Args:
        url: ``http(s)://host:port`` of a Gyre server; by default ``[server] url`` /
            ``GYRE_SERVER_URL`` if set, else the local stores in ``gyre.toml``.
        token: bearer token for the server (default ``GYRE_SERVER_TOKEN``).
        settings: resolved settings to use instead of reading ``gyre.toml``.
    """
    settings = settings or load_settings()
    url = url or settings.server_url
    if url:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"connect() takes an http(s):// server URL, got {url!r}.")
        from gyre.client.http import HttpBackend

        token = token or settings.get("server", "token") or None
        return Client(HttpBackend(url, token, actor=settings.actor), settings)
    from gyre.client.backend import LocalBackend

    return Client(LocalBackend(settings), settings)


class Client:
    """Experiments, runs and models of one Gyre installation."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self.experiments = Experiments(backend)
        self.runs = Runs(self)
        self.models = Models(self)
        self._features: FeatureStore | None = None

    def __repr__(self) -> str:
        return f"Client({self.backend.location!r})"

    def close(self) -> None:
        if self._features is not None:
            self._features.close()
        self.backend.close()

    def start_run(
        self,
        experiment: str = "default",
        run_name: str | None = None,
        *,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        capture_environment: bool = True,
    ) -> ActiveRun:
        """Start a run; use it as a context manager so it ends (FAILED on an exception)."""
        from gyre.tracking.capture import capture_environment as capture

        env = capture() if capture_environment else None
        info = self.backend.create_run(
            experiment, name=run_name, parent_run_id=parent_run_id, tags=tags, environment=env
        )
        return ActiveRun(self, info)

    @property
    def features(self) -> FeatureStore:
        """The project's feature store (needs the local stores, not a server URL)."""
        if self._features is None:
            from gyre.client.backend import LocalBackend
            from gyre.data.lake import Lake
            from gyre.features.store import FeatureStore
            from gyre.project import project_definitions

            if not isinstance(self.backend, LocalBackend):
                raise InvalidArgument(
                    "The feature store reads the lake directly: connect to the project's stores "
                    "(unset GYRE_SERVER_URL) rather than to a server."
                )
            settings = self.settings
            self._features = FeatureStore(
                self.backend.meta,
                Lake(settings.store_url),
                settings.online_url,
                lambda: project_definitions(settings),
            )
        return self._features

    def get_training_set(self, entity_df: Any, features: Sequence[str], **options: Any) -> TrainingSet:
        """Point-in-time training set (see :meth:`FeatureStore.get_training_set`).

        The dataset versions read are recorded on the active run (or the running pipeline
        step), for lineage and reproduction. Inside a step of a reproduction the recorded
        versions are read unless ``versions`` is given.
        """
        from gyre.client.fluent import active_run
        from gyre.pipelines.context import pinned_versions, record_read

        pins = pinned_versions()
        if pins and "versions" not in options:
            options["versions"] = pins
        result = self.features.get_training_set(entity_df, features, **options)
        record_read(result.dataset_versions)
        run = active_run()
        if run is not None and run.client is self:
            run.log_dataset_versions(result.dataset_versions)
        return result

    def get_online_features(
        self, entity_rows: Sequence[dict[str, Any]], features: Sequence[str], **options: Any
    ) -> list[dict[str, Any]]:
        """Latest feature values per entity row (see :meth:`FeatureStore.get_online_features`)."""
        return self.features.get_online_features(entity_rows, features, **options)

    def upload_artifact(self, run_id: str, local: Path, artifact_path: str) -> ArtifactInfo:
        """Store a file or directory and record it as ``artifact_path`` of the run."""
        from gyre.store import check_relative_path

        check_relative_path(artifact_path)
        if local.is_dir():
            blob, is_dir = self.backend.blobs.put_tree(local), True
        elif local.is_file():
            blob, is_dir = self.backend.blobs.put_file(local), False
        else:
            raise InvalidArgument(f"Nothing to log at {local}: pass an existing file or directory.")
        return self.backend.record_artifact(run_id, artifact_path, blob.digest, blob.size, is_dir)

    def download_artifact(self, run_id: str, path: str, dest: str | os.PathLike[str]) -> Path:
        """Download a run's artifact (file or directory) to ``dest``, verifying every byte."""
        art = self.backend.get_artifact(run_id, path)
        name = f"runs:/{run_id}/{path}"
        if art.is_dir:
            return self.backend.blobs.get_tree(art.digest, dest, name)
        return self.backend.blobs.get_file(art.digest, dest, name)

    def load_model(self, uri: str) -> Any:
        """Load a model by ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/PATH``."""
        from gyre.models.package import load_model_package

        return load_model_package(self.model_path(uri))

    def model_path(self, uri: str) -> Path:
        """Download (once, cached by digest) the package a model URI points at; return its folder."""
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            digest = self.backend.get_artifact(run_id, path or "model").digest
        else:
            digest = self.backend.resolve(uri).package_digest
        cache = self.settings.root / ".gyre" / "cache" / "models" / digest
        if not (cache / ".complete").exists():
            tmp = cache.with_name(f"{digest}.{os.getpid()}.partial")
            self.backend.blobs.get_tree(digest, tmp, uri)
            (tmp / ".complete").touch()
            try:
                tmp.rename(cache)
            except OSError:  # another process finished the same download first
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        return cache

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo:
        return self.backend.set_alias(name, alias, version, reason)


class Experiments:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def create(self, name: str, description: str = "", tags: dict[str, str] | None = None) -> ExperimentInfo:
        return self._b.create_experiment(name, description, tags)

    def get(self, name_or_id: str) -> ExperimentInfo:
        return self._b.get_experiment(name_or_id)

    def list(self) -> builtins.list[ExperimentInfo]:
        return self._b.list_experiments()


class Runs:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._b = client.backend

    def get(self, run_id: str) -> RunInfo:
        return self._b.get_run(run_id)

    def list(
        self,
        experiment: str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        parent_run_id: str | None = None,
    ) -> builtins.list[RunInfo]:
        """Runs matching ``filter`` (e.g. ``"metrics.auc > 0.9 and params.model = 'lgbm'"``)."""
        return self._b.list_runs(
            experiment=experiment,
            filter=filter,
            order_by=order_by,
            max_results=max_results,
            parent_run_id=parent_run_id,
        )

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> int:
        """Write ``(key, value, step, timestamp_ms)`` points, params and tags in one transaction."""
        return self._b.log_batch(run_id, metrics, params, tags)

    def metric_history(self, run_id: str, key: str) -> builtins.list[MetricPoint]:
        return self._b.metric_history(run_id, key)

    def finish(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> RunInfo:
        return self._b.finish_run(run_id, status, error)

    def artifacts(self, run_id: str) -> builtins.list[ArtifactInfo]:
        return self._b.list_artifacts(run_id)

    def download_artifact(self, run_id: str, path: str, dest: str | os.PathLike[str]) -> Path:
        return self._c.download_artifact(run_id, path, dest)


class Models:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._b = client.backend

    def create(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModelInfo:
        return self._b.create_registered_model(name, description, tags)

    def get(self, name: str) -> RegisteredModelInfo:
        return self._b.get_registered_model(name)

    def list(self) -> builtins.list[RegisteredModelInfo]:
        return self._b.list_registered_models()

    def versions(self, name: str) -> builtins.list[ModelVersionInfo]:
        return self._b.list_model_versions(name)

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        return self._b.get_model_version(name, version)

    def resolve(self, uri: str) -> ModelVersionInfo:
        parse_model_uri(uri)
        return self._b.resolve(uri)

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo:
        return self._b.set_alias(name, alias, version, reason)

    def delete_alias(self, name: str, alias: str, reason: str = "") -> None:
        self._b.delete_alias(name, alias, reason)

    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[AliasMove]:
        return self._b.alias_history(name, alias)

    def load(self, uri: str) -> Any:
        return self._c.load_model(uri)

    def record_reference(self, name: str, version: int, data: Any) -> builtins.list[Any]:
        """Store the drift reference of a registered version: ``data`` (its training inputs)
        and the version's predictions on it (see :mod:`gyre.monitoring.reference`)."""
        from gyre.monitoring.reference import record_reference_for

        return record_reference_for(self._c, self._b.get_model_version(name, version), data=data)
