"""The operations the SDK needs from a Gyre installation, and the local implementation.

Two implementations: :class:`LocalBackend` calls the service functions on the metadata and
artifact stores directly; :class:`gyre.client.http.HttpBackend` calls the same functions
through the control-plane API. Method names match the service functions one to one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from gyre.config import Settings
from gyre.models import registry
from gyre.models.registry import AliasMove, ModelVersionInfo, RegisteredModelInfo
from gyre.store import TreeStore
from gyre.tracking import service as tracking
from gyre.tracking.entities import ArtifactInfo, ExperimentInfo, MetricPoint, RunInfo


class Backend(ABC):
    """Everything the client does, as calls that a local store or a remote server can answer."""

    location: str

    @property
    @abstractmethod
    def blobs(self) -> TreeStore:
        """Where artifact bytes go: content-addressed blobs and trees."""

    # tracking
    @abstractmethod
    def create_experiment(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> ExperimentInfo: ...
    @abstractmethod
    def get_experiment(self, name_or_id: str) -> ExperimentInfo: ...
    @abstractmethod
    def list_experiments(self) -> list[ExperimentInfo]: ...
    @abstractmethod
    def create_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        environment: dict[str, str | None] | None = None,
    ) -> RunInfo: ...
    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo: ...
    @abstractmethod
    def finish_run(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> RunInfo: ...
    @abstractmethod
    def list_runs(
        self,
        *,
        experiment: str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        parent_run_id: str | None = None,
    ) -> list[RunInfo]: ...
    @abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> int: ...
    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...
    @abstractmethod
    def record_artifact(
        self, run_id: str, path: str, digest: str, size: int, is_dir: bool
    ) -> ArtifactInfo: ...
    @abstractmethod
    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]: ...
    @abstractmethod
    def get_artifact(self, run_id: str, path: str) -> ArtifactInfo: ...

    # registry
    @abstractmethod
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModelInfo: ...
    @abstractmethod
    def get_registered_model(self, name: str) -> RegisteredModelInfo: ...
    @abstractmethod
    def list_registered_models(self) -> list[RegisteredModelInfo]: ...
    @abstractmethod
    def create_model_version(self, name: str, **fields: Any) -> ModelVersionInfo: ...
    @abstractmethod
    def get_model_version(self, name: str, version: int) -> ModelVersionInfo: ...
    @abstractmethod
    def list_model_versions(self, name: str) -> list[ModelVersionInfo]: ...
    @abstractmethod
    def resolve(self, uri: str) -> ModelVersionInfo: ...
    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo: ...
    @abstractmethod
    def delete_alias(self, name: str, alias: str, reason: str = "") -> None: ...
    @abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]: ...

    def close(self) -> None:  # noqa: B027 - optional hook; backends without connections keep it
        """Release connections."""


class LocalBackend(Backend):
    """Talks to the metadata database and artifact store named in the settings."""

    def __init__(self, settings: Settings) -> None:
        from gyre.meta import MetaStore
        from gyre.store import ArtifactStore

        self.settings = settings
        self.location = settings.root.as_posix()
        self.meta = MetaStore(settings.metadata_url, actor=settings.actor)
        self.store = ArtifactStore(settings.store_url)

    @property
    def blobs(self) -> TreeStore:
        return self.store

    def close(self) -> None:
        self.meta.close()

    def create_experiment(self, name, description="", tags=None):
        return tracking.create_experiment(self.meta, name, description, tags)

    def get_experiment(self, name_or_id):
        return tracking.get_experiment(self.meta, name_or_id)

    def list_experiments(self):
        return tracking.list_experiments(self.meta)

    def create_run(self, experiment, *, name=None, parent_run_id=None, tags=None, environment=None):
        return tracking.create_run(
            self.meta, experiment, name=name, parent_run_id=parent_run_id, tags=tags, environment=environment
        )

    def get_run(self, run_id):
        return tracking.get_run(self.meta, run_id)

    def finish_run(self, run_id, status="FINISHED", error=None):
        return tracking.finish_run(self.meta, run_id, status, error)

    def list_runs(self, *, experiment=None, filter=None, order_by=None, max_results=1000, parent_run_id=None):
        return tracking.list_runs(
            self.meta,
            experiment=experiment,
            filter=filter,
            order_by=order_by,
            max_results=max_results,
            parent_run_id=parent_run_id,
        )

    def log_batch(self, run_id, metrics=(), params=None, tags=None):
        return tracking.log_batch(self.meta, run_id, metrics, params, tags)

    def metric_history(self, run_id, key):
        return tracking.metric_history(self.meta, run_id, key)

    def record_artifact(self, run_id, path, digest, size, is_dir):
        return tracking.record_artifact(self.meta, run_id, path, digest, size, is_dir)

    def list_artifacts(self, run_id):
        return tracking.list_artifacts(self.meta, run_id)

    def get_artifact(self, run_id, path):
        return tracking.get_artifact(self.meta, run_id, path)

    def create_registered_model(self, name, description="", tags=None):
        return registry.create_registered_model(self.meta, name, description, tags)

    def get_registered_model(self, name):
        return registry.get_registered_model(self.meta, name)

    def list_registered_models(self):
        return registry.list_registered_models(self.meta)

    def create_model_version(self, name, **fields):
        return registry.create_model_version(self.meta, name, **fields)

    def get_model_version(self, name, version):
        return registry.get_model_version(self.meta, name, version)

    def list_model_versions(self, name):
        return registry.list_model_versions(self.meta, name)

    def resolve(self, uri):
        return registry.resolve(self.meta, uri)

    def set_alias(self, name, alias, version, reason=""):
        return registry.set_alias(self.meta, name, alias, version, reason)

    def delete_alias(self, name, alias, reason=""):
        registry.delete_alias(self.meta, name, alias, reason)

    def alias_history(self, name, alias=None):
        return registry.alias_history(self.meta, name, alias)
