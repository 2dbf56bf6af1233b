"""Where one request to an endpoint goes while a deployment splits its traffic.

A :class:`Split` is what a deployment decides (plain data, read from the metadata store by
:mod:`gyre.deploy`); a :class:`Route` is the served form of it, holding the loaded model
versions. Assignment is sticky by entity key: the endpoint's join keys in the request's first
row hash to a bucket in [0, 10,000), and the candidate takes the buckets below its weight. The
same entity always lands on the same side at a given weight, and, because the candidate's
buckets only grow as its weight grows, an entity moved to the candidate stays there through
the later canary steps. An endpoint without entity keys is assigned at random per request.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gyre.errors import InvalidArgument

if TYPE_CHECKING:
    from gyre.serving.endpoint import CompiledEndpoint
    from gyre.serving.inputs import Prepared

BUCKETS = 10_000


@dataclass(frozen=True)
class Split:
    """An endpoint's traffic during a deployment.

    Attributes:
        baseline: the model version that answers the rest of the traffic.
        candidate: the model version being rolled out.
        weight: percent of entities (0 to 100) the candidate answers.
        shadow: the candidate also predicts on a copy of every request; its answers are
            logged (``shadow_of``) and never returned.
        deployment: the deployment's id, for the logs.
    """

    baseline: int
    candidate: int
    weight: float
    shadow: bool = False
    deployment: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise InvalidArgument(f"A traffic weight is a percentage from 0 to 100, got {self.weight}.")


def bucket(key: tuple[Any, ...]) -> int:
    """The entity ``key``'s bucket in [0, BUCKETS): stable across processes and restarts.

    blake2b rather than ``hash()``: Python salts ``hash`` of strings per process, and every
    server (and every restart) must assign an entity the same way.
    """
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class Route:
    """An endpoint's loaded versions and how its traffic is split between them.

    Args:
        primary: the version answering every request outside the candidate's share.
        candidate: the version answering its share (None: no split).
        weight: the candidate's percent of entities.
        shadow: a version predicting on copies of the traffic, never answering.
    """

    __slots__ = ("_threshold", "candidate", "primary", "shadow", "split")

    def __init__(
        self,
        primary: CompiledEndpoint,
        candidate: CompiledEndpoint | None = None,
        weight: float = 0.0,
        shadow: CompiledEndpoint | None = None,
        split: Split | None = None,
    ) -> None:
        self.primary = primary
        self.candidate = candidate
        self.shadow = shadow
        self.split = split
        self._threshold = round(weight * BUCKETS / 100) if candidate is not None else 0

    def pick(self, prepared: Prepared) -> CompiledEndpoint:
        """The version that answers this request."""
        if self._threshold <= 0:
            return self.primary
        if self._threshold >= BUCKETS:
            return self.candidate  # type: ignore[return-value]
        key = self.primary.entity_key(prepared)
        b = bucket(key) if key is not None else random.randrange(BUCKETS)
        return self.candidate if b < self._threshold else self.primary  # type: ignore[return-value]

    def versions(self) -> list[CompiledEndpoint]:
        return [e for e in (self.primary, self.candidate, self.shadow) if e is not None]
