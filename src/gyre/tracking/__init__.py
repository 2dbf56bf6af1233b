"""Experiment tracking: experiments, runs with params, tags and metric histories, artifacts,
and the provenance of each run (git commit, uncommitted changes, Python, packages, host)."""

from gyre.tracking.entities import ArtifactInfo, ExperimentInfo, MetricPoint, RunInfo

__all__ = ["ArtifactInfo", "ExperimentInfo", "MetricPoint", "RunInfo"]
