"""The reactions Gyre itself runs: how one stage of the loop follows another."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gyre.controller.reactions import EventRecord, Reaction
from gyre.meta import UnitOfWork

if TYPE_CHECKING:
    from gyre.features.store import FeatureStore

MATERIALIZE = "features.materialize"


def materialize_reaction(features: FeatureStore) -> Reaction:
    """On ``dataset.version_created``: bring the online views over that dataset up to date.

    Incremental from each view's watermark, so one call catches up with every version
    committed since (a burst of pushed versions costs one read of the new files). The online
    store's writes are idempotent, so a retry after a crash repeats nothing visible.
    """

    def handle(uow: UnitOfWork, event: EventRecord) -> None:
        dataset = event.payload.get("dataset")
        views = [v.name for v in features.views().values() if v.online and v.source == dataset]
        if views:
            features.materialize(views)

    return Reaction(
        MATERIALIZE,
        "dataset.version_created",
        handle,
        description="Materialize online feature views when their dataset gets a new version.",
    )


def default_reactions(features: FeatureStore) -> list[Reaction]:
    """The reactions ``gyre controller`` and ``gyre up`` run."""
    return [materialize_reaction(features)]
