"""How fast ``gyre demo`` runs: the time compression and the length of each phase.

Two presets: :data:`DEFAULT` (about two minutes, enough labels for steady
figures) and :data:`FAST` (under a minute, what CI runs). Both play the same story at the
same compression (one story hour every 30 s), so the project's windows are the same; FAST
holds each phase for less time and checks more often.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from gyre.demo.payments import LabelDelay, PaymentsConfig


@dataclasses.dataclass(frozen=True)
class Pace:
    """The demo's clock and phases. Story spans are ``timedelta``; real ones are seconds.

    Attributes:
        scale: story seconds per real second.
        payments_per_second: traffic in real time, averaged over the story's day (late
            morning, when the demo runs, is about 1.4 times busier).
        fraud_rate: share of fraudulent payments. Ten times the real world's 1%: at 1%, the
            seconds of labels the demo can wait for hold too few frauds to learn the new
            pattern from, or to measure a live AUC.
        history: story time ingested before the demo starts, ending at ``story_start``.
        train_window: the story time a training run reads (the last half day: the nights'
            account takeovers and the day's payments; within the history, so the feature
            windows of every row it reads are complete).
        half_life: training weighs a payment half as much per half-life of age, so a model
            retrained soon after a change learns from the few recent labels.
        holdout_window: gates judge a model on a random share of this recent story time.
        reference_window: drift monitoring compares live traffic with this recent story time
            (the traffic of the same time of day, not a whole day's mix).
        label_delay: when labels arrive after their payments (story time).
        pre_drift_s: live traffic before the drift is switched on.
        after_promotion_s: live traffic once the retrained model took over.
        monitor_every_s: how often the controller evaluates the alert rules.
        drift_window_s: the prediction-log window each drift test reads.
        quality_window_s, quality_min_labels: the live AUC alert's window of predictions and
            the labels it needs before it judges.
        deployments_every_s: how often the controller advances rollouts.
        canary_steps, canary_interval_s: the canary's traffic shares and how long each holds.
        canary_min_requests, canary_min_labels: what a canary step needs before its analysis.
        phase_timeout_s: how long the demo waits for the platform's next move before it
            gives up (detection, retraining, rollout).
    """

    name: str
    scale: float
    payments_per_second: float
    fraud_rate: float
    pre_drift_s: float
    after_promotion_s: float
    monitor_every_s: float
    drift_window_s: float
    quality_window_s: float
    quality_min_labels: int
    deployments_every_s: float
    canary_steps: tuple[float, ...]
    canary_interval_s: float
    canary_min_requests: int
    canary_min_labels: int
    phase_timeout_s: float
    history: timedelta = timedelta(days=2)
    train_window: timedelta = timedelta(hours=12)
    half_life: timedelta = timedelta(hours=12)
    holdout_window: timedelta = timedelta(hours=1)
    reference_window: timedelta = timedelta(hours=2)
    story_start: datetime = datetime(2024, 1, 3, 11, tzinfo=UTC)  # late morning: daytime traffic
    label_delay: LabelDelay = dataclasses.field(
        default_factory=lambda: LabelDelay(median=timedelta(minutes=2), sigma=0.5, max=timedelta(minutes=10))
    )

    def story_seconds(self, story: timedelta) -> int:
        """A story span in real seconds, at least one."""
        return max(1, round(story.total_seconds() / self.scale))

    def payments_config(self, seed: int) -> PaymentsConfig:
        """The generator's settings: the live rate in story time, the story's start."""
        return PaymentsConfig(
            seed=seed,
            payments_per_hour=self.payments_per_second * 3600 / self.scale,
            fraud_rate=self.fraud_rate,
            start=self.story_start - self.history,
            label_delay=self.label_delay,
        )


DEFAULT = Pace(
    name="default",
    scale=120,
    payments_per_second=45,
    fraud_rate=0.1,
    pre_drift_s=30,
    after_promotion_s=30,
    monitor_every_s=4,
    drift_window_s=12,
    quality_window_s=30,
    quality_min_labels=400,
    deployments_every_s=1,
    canary_steps=(25, 50, 100),
    canary_interval_s=6,
    canary_min_requests=50,
    canary_min_labels=50,
    phase_timeout_s=90,
)
FAST = dataclasses.replace(
    DEFAULT,
    name="fast",
    pre_drift_s=10,
    after_promotion_s=10,
    monitor_every_s=2,
    drift_window_s=8,
    quality_window_s=15,
    quality_min_labels=300,
    canary_steps=(50, 100),
    canary_interval_s=3,
    canary_min_requests=30,
    canary_min_labels=30,
    phase_timeout_s=40,
)
