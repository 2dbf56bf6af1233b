"""``gyre demo``: the closed loop on a drifting fraud stream, unattended, in one process.

The demo sets the stage and plays the world; the platform does the rest:

1. *Set up* (as a user would): write the project, ``gyre apply`` it, start the server and the
   controller (``gyre up``), ingest two days of history (``gyre ingest``), train and gate
   the first model (``gyre run train_fraud``) and make it the champion — the one step a
   person takes, since there is nothing to canary against yet.
2. *Live*: payments over HTTP, predicted, recorded, labels fed back as they arrive.
3. *Drift*: a new market opens and a fraud ring works it. From here on the demo only
   watches: the controller's monitor detects the drift and its alert asks for a retrain;
   the controller runs the pipeline on the new labels; the gates pass it as challenger; the
   endpoint's rollout policy canaries it and promotes it.
4. *After*: traffic on the new champion, then the summary, every figure measured from the
   prediction log and the feedback the platform recorded.

The project stays in its folder for ``gyre up``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from gyre.demo import project as proj
from gyre.demo.pace import Pace
from gyre.demo.platform import controller_running, inside, logging_to, serving, wait_ready
from gyre.demo.summary import Summary, live_auc, percentile
from gyre.demo.timeline import Timeline, labels_and_frauds
from gyre.demo.traffic import Traffic
from gyre.demo.watch import Watch
from gyre.demo.world import World
from gyre.errors import GyreError

if TYPE_CHECKING:
    import pyarrow as pa

    from gyre.client.client import Client
    from gyre.config import Settings
    from gyre.demo.traffic import TrafficStats
    from gyre.meta import MetaStore

LOG_FILE = ".gyre/logs/demo.log"  # the platform's own log during the demo
STATUS_EVERY_S = 5.0
LABEL_GRACE_S = 2.0


class DemoFailed(GyreError):
    """The loop did not close: the platform did not take a step in time, or refused one."""


def new_folder() -> Path:
    """A fresh temporary folder for the demo's project (kept after the demo)."""
    return Path(tempfile.mkdtemp(prefix="gyre-demo-"))


def run_demo(folder: Path, pace: Pace, seed: int, timeline: Timeline) -> Summary:
    """Run the whole demo in ``folder`` (new or empty) and return its summary.

    Raises:
        AlreadyExists: ``folder`` is not empty (nothing is written).
        DemoFailed: the loop did not close (the message says where it stopped).
    """
    proj.check_target(folder)
    proj.write_project(folder, pace)
    timeline.say(f"project written to {folder}", "ok", "gyre.toml, definitions.py")
    with inside(folder), logging_to(folder / LOG_FILE):
        return _Demo(folder, pace, seed, timeline).run()


class _Demo:
    def __init__(self, folder: Path, pace: Pace, seed: int, timeline: Timeline) -> None:
        self.folder, self.pace, self.seed, self.timeline = folder, pace, seed, timeline
        self.summary = Summary(project=str(folder), pace=pace.name, seed=seed)
        self.history_end = self.live_started = datetime.now(UTC)
        self._served = (0, time.monotonic())  # requests served at the last status line, and when

    def run(self) -> Summary:
        import gyre
        from gyre.config import load_settings
        from gyre.meta import MetaStore

        started = time.monotonic()
        settings = load_settings()
        meta = MetaStore(settings.metadata_url, actor="gyre-demo")
        client = gyre.connect(settings=settings)
        try:
            self._apply(meta, settings)
            with controller_running(self.pace) as controller, serving(settings) as url:
                self.timeline.say(
                    f"platform up: API and endpoint at {url}",
                    "ok",
                    "controller: " + ", ".join(r.name for r in controller.reactions),
                )
                world, history = self._ingest_history(meta, settings)
                first = self._first_model(client)
                wait_ready(url, self.pace.phase_timeout_s)
                self.timeline.say(f"endpoint '{proj.ENDPOINT}' serves {proj.MODEL} v{first}", "ok", url)
                watch = Watch(meta, self.timeline, client.runs)
                watch.skip_to_now(first)
                traffic = Traffic(url, world, endpoint=proj.ENDPOINT, request_fields=proj.REQUEST_FIELDS)
                try:
                    self._live(meta, traffic, watch, history)
                finally:
                    traffic.stop(LABEL_GRACE_S)
                stats = traffic.snapshot()
            self._summarize(meta, settings, watch, stats, first)
        finally:
            client.close()
            meta.close()
        self.summary.duration_s = time.monotonic() - started
        return self.summary

    # -- setting up -------------------------------------------------------------------------

    def _apply(self, meta: MetaStore, settings: Settings) -> None:
        from gyre.project import apply, project_definitions

        plan = apply(meta, project_definitions(settings))
        kinds: dict[str, list[str]] = {}
        for c in plan.changes:
            kinds.setdefault(c.kind.replace("_", " "), []).append(c.name)
        applied = "; ".join(f"{k} {', '.join(v)}" for k, v in kinds.items())
        self.timeline.say("definitions applied ('gyre apply')", "ok", applied)

    def _ingest_history(self, meta: MetaStore, settings: Settings) -> tuple[World, pa.Table]:
        from gyre.data.ingest import ingest_files
        from gyre.data.lake import Lake
        from gyre.store import ArtifactStore

        now = datetime.now(UTC)
        pace = self.pace
        world = World.create(
            pace.payments_config(self.seed), scale=pace.scale, story_now=pace.story_start, real_now=now
        )
        history = world.payments(world.real(pace.story_start - pace.history), now)
        labels = world.labels(history, now)
        paths = proj.write_history(self.folder, history.drop_columns(["is_fraud"]), labels)
        lake, store = Lake(settings.store_url), ArtifactStore(settings.store_url)
        for dataset, path in zip((proj.PAYMENTS, proj.LABELS), paths, strict=True):
            result = ingest_files(meta, lake, store, dataset, str(path), actor="gyre-demo")
            if result.version is None:
                raise DemoFailed(f"The history of '{dataset}' was quarantined: {result.report.summary()}.")
            self.timeline.say(
                f"ingested {result.rows:,} {dataset} as version {result.version} ('gyre ingest')",
                "ok",
                f"{pace.history.days} days of history, {path.relative_to(self.folder)}",
            )
        self.history_end = now
        return world, history

    def _first_model(self, client: Client) -> int:
        from gyre.pipelines.definition import Pipeline
        from gyre.pipelines.runner import StepEvent, run_pipeline
        from gyre.project import project_definitions

        pipe = project_definitions(client.settings).get("pipeline", proj.PIPELINE)
        assert isinstance(pipe, Pipeline)

        def on_event(e: StepEvent) -> None:
            if e.kind in ("finished", "failed"):
                took = f"{e.duration_s:.1f} s" if e.duration_s is not None else ""
                self.timeline.say(f"{proj.PIPELINE} · {e.step} {e.kind}", "status", took or e.message)

        self.timeline.say(f"training the first model ('gyre run {proj.PIPELINE}')")
        result = run_pipeline(
            client, pipe, trigger="manual", reason="gyre demo: the first model", on_event=on_event
        )
        outcome = result.outcome
        if outcome is None or outcome.version is None:
            why = outcome.reason if outcome is not None else result.error
            raise DemoFailed(f"The first model was not registered: {why}")
        for g in outcome.gates:
            self.timeline.say(f"gate {g.gate}: {g.reason}", "ok" if g.passed else "alert")
        client.set_alias(
            proj.MODEL,
            "champion",
            outcome.version,
            "gyre demo: the first model goes live (no champion yet to canary against)",
        )
        self.timeline.say(f"{proj.MODEL} v{outcome.version} registered and made champion", "ok")
        return outcome.version

    # -- live -------------------------------------------------------------------------------

    def _live(self, meta: MetaStore, traffic: Traffic, watch: Watch, history: pa.Table) -> None:
        pace, seen = self.pace, watch.seen
        self.timeline.phase("live traffic")
        traffic.start(self.history_end, history)
        self.live_started = datetime.now(UTC)
        self._served = (0, time.monotonic())
        self.timeline.say("payments flow over HTTP; their labels come back seconds later", "info")
        self._hold(pace.pre_drift_s, meta, traffic, watch, until=lambda: False)

        self.timeline.phase("drift")
        seen.drift_at = traffic.switch_drift_on()
        self.timeline.say("drift on: a new market opens (BR, MX, NG, PH) and a fraud ring works it", "warn")
        for what, done in (
            ("detect the drift", lambda: seen.detected_at is not None),
            ("retrain", lambda: seen.retrained_at is not None),
            ("promote the retrained model", lambda: seen.promoted_at is not None),
        ):
            self._hold(pace.phase_timeout_s, meta, traffic, watch, until=done, what=what)

        self.timeline.phase("after promotion")
        self._hold(pace.after_promotion_s, meta, traffic, watch, until=lambda: False)

    def _hold(
        self,
        seconds: float,
        meta: MetaStore,
        traffic: Traffic,
        watch: Watch,
        *,
        until: Callable[[], bool],
        what: str = "",
    ) -> None:
        """Keep the traffic going for ``seconds`` or until ``until()``; fail on a timeout if
        ``what`` names a step the platform must take."""
        deadline = time.monotonic() + seconds
        last_status = time.monotonic()
        while True:
            watch.poll()
            if traffic.error is not None:
                raise DemoFailed(f"The live traffic stopped: {traffic.error}") from traffic.error
            if watch.seen.failure:
                raise DemoFailed(f"The loop did not close: {watch.seen.failure}")
            if until():
                return
            if time.monotonic() >= deadline:
                if what:
                    raise DemoFailed(
                        f"The platform did not {what} within {seconds:.0f} s of the previous step; the "
                        f"project is in {self.folder} ('gyre monitor alerts', 'gyre runs list', "
                        "'gyre deployments list' show how far it got)."
                    )
                return
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                self._status(meta, traffic)
            time.sleep(0.2)

    def _status(self, meta: MetaStore, traffic: Traffic) -> None:
        from gyre.monitoring.feedback import list_feedback

        stats = traffic.snapshot()
        since = datetime.now(UTC) - timedelta(seconds=3 * STATUS_EVERY_S)
        feedback = list_feedback(meta, proj.ENDPOINT, since)
        parts = []
        for version in sorted(stats.by_version):
            w = live_auc(feedback, version, since, None)
            if w.labelled:
                auc = "-" if w.auc is None else f"{w.auc:.3f}"
                parts.append(f"v{version} live AUC {auc} ({labels_and_frauds(w)})")
        served_before, at = self._served
        rate = (stats.requests_served - served_before) / max(1e-9, time.monotonic() - at)
        self._served = (stats.requests_served, time.monotonic())
        served = ", ".join(f"v{v}: {n:,}" for v, n in sorted(stats.by_version.items()))
        self.timeline.say(
            f"{stats.requests_served:,} requests served ({served}; {rate:.0f}/s); " + "; ".join(parts),
            "status",
        )

    # -- the summary ------------------------------------------------------------------------

    def _summarize(
        self, meta: MetaStore, settings: Settings, watch: Watch, stats: TrafficStats, first: int
    ) -> None:
        from gyre.data.lake import Lake
        from gyre.deploy.records import list_deployments
        from gyre.models.registry import get_model_version
        from gyre.monitoring import predictions
        from gyre.monitoring.feedback import list_feedback

        s, seen = self.summary, watch.seen
        feedback = list_feedback(meta, proj.ENDPOINT)
        drift, promoted = seen.drift_at, seen.promoted_at
        new = seen.retrained_version
        s.before_drift = live_auc(feedback, first, self.live_started, drift)
        s.during_drift = live_auc(feedback, first, drift, promoted)
        s.after_promotion = live_auc(feedback, new, promoted, None)
        if seen.deployment_started_at is not None:
            s.canary = {
                "baseline": live_auc(feedback, first, seen.deployment_started_at, promoted),
                "candidate": live_auc(feedback, new, seen.deployment_started_at, promoted),
            }
        assert drift is not None
        for field, at in (
            ("seconds_to_detection", seen.detected_at),
            ("seconds_to_auc_alert", seen.quality_alert_at),
            ("seconds_to_retrain", seen.retrained_at),
            ("seconds_to_promotion", promoted),
        ):
            setattr(s, field, (at - drift).total_seconds() if at is not None else None)
        s.requests_served, s.requests_failed = stats.requests_served, stats.requests_failed
        s.labels_fed_back = len(feedback)
        s.latency_p50_ms, s.latency_p99_ms = (
            percentile(stats.latencies_ms, 50),
            percentile(stats.latencies_ms, 99),
        )
        lake = Lake(settings.store_url)
        s.predictions_logged = sum(predictions.counts(lake, proj.ENDPOINT, None, None).values())
        alert = seen.alert or {}
        s.drifted_features = list(alert.get("features") or [])
        s.alert = {k: alert.get(k) for k in ("rule", "alert_id", "message", "at")}
        triggered = seen.triggered or {}
        run_id = get_model_version(meta, proj.MODEL, new).run_id if new is not None else None
        s.retrain = {
            "pipeline": proj.PIPELINE,
            "run_id": run_id,
            "trigger": triggered.get("trigger"),
            "reason": triggered.get("reason"),
            "alert_id": triggered.get("alert_id"),
        }
        started = (seen.deployment or {}).get("deployment")
        for d in list_deployments(meta, proj.ENDPOINT):
            if d.id == started:
                s.deployment = {"id": d.id, "strategy": d.strategy, "steps": d.steps, "state": d.state}
        s.models = {"first": first, **({"retrained": new} if new is not None else {})}
