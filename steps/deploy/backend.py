"""What a canary backend does, so one analysis (steps/deploy/canary.py) and one promotion
protocol (steps/deploy/promotion.py) drive every backend.

A backend owns two serving tracks for one model name: *stable*, which serves the version
`stable.json` points at and keeps serving after the deploy step ends, and *canary*, which
serves the candidate only while the deploy step runs. A deploy calls, in this order:

    restore(stable digest)                             # stable serves it, no canary
    start_canary(version)
    for each step of the progression:
        route(percent); hold(seconds); scrape()        # compare, stop at the first breach
    promote(version)                                   # stable serves the candidate

and `restore(digest)` again when anything fails, with whatever digest `stable.json` names by
then, so it must work from any state (a canary that never came up, a canary left running by
a deploy that was killed, a stable server that is gone). The first model ever (no stable)
skips the canary: `restore(None)`, then `promote(version)`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from steps.core.specs import DeploySpec
from steps.core.store import ArtifactStore

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd


@dataclass(frozen=True)
class ModelVersion:
    """One deployable model version, in both forms a backend may need."""

    name: str
    """Model name in the OIP URLs (already checked by steps/registry.check_model_name)."""
    digest: str
    """sha256 of the ONNX file; the server is started with `--digest` so it refuses others."""
    onnx: Path
    schema: Path
    """The ONNX file and its feature-schema.json as the deploy step received them."""
    onnx_uri: str
    schema_uri: str
    """The same files in the registry version folder (`s3://bucket/registry/<name>/versions/
    <digest>/...`), for servers that fetch the model themselves (pods)."""


@dataclass(frozen=True)
class Outcomes:
    """Scored rows whose labels have arrived, per track, since the canary started: what a
    backend with a label feed knows (the local one sends the labelled test split)."""

    canary_scores: "npt.NDArray[np.float64]"
    canary_labels: "npt.NDArray[np.int8]"
    stable_scores: "npt.NDArray[np.float64]"
    stable_labels: "npt.NDArray[np.int8]"


@dataclass(frozen=True)
class Scrape:
    """Prometheus text exposition of `/metrics`, one text per server process (pod) per track.

    The analysis sums the `mlpipe_inference_*` series of each track over its texts and
    compares deltas between consecutive scrapes, so a scrape must cover every process that
    took traffic in the track since the previous one.
    """

    stable: list[str]
    canary: list[str]


class CanaryBackend(Protocol):
    """Where the stable and canary servers run and how traffic is split between them."""

    @property
    def kind(self) -> str:
        """Short backend name for the rollout record: "local" or "kubernetes"."""
        ...

    def start_canary(self, version: ModelVersion) -> None:
        """Bring up the canary serving `version`, ready, with no traffic routed to it yet."""
        ...

    def route(self, canary_percent: int) -> None:
        """Send `canary_percent` (0-100) of the traffic to the canary, the rest to stable."""
        ...

    def hold(self, seconds: float) -> None:
        """Let traffic flow at the current split for `seconds` (kubernetes: real users wait;
        local: the backend sends test rows itself)."""
        ...

    def scrape(self) -> Scrape:
        """Read `/metrics` of every stable and canary server now."""
        ...

    def outcomes(self) -> Outcomes | None:
        """The labelled outcomes of the traffic since the canary started, as far as labels
        have arrived; None without a label source."""
        ...

    def promote(self, version: ModelVersion) -> str:
        """Make `version` the stable one (all traffic to it, canary removed, or the stable
        track created on a first deploy); returns the stable endpoint's base URL."""
        ...

    def restore(self, digest: str | None) -> None:
        """Stable serves the registry version `digest` (None: this model is not served at
        all), all traffic goes to it, and no canary runs, whatever state things were in."""
        ...

    def served(self) -> str | None:
        """The digest the stable track serves now; None when it serves this model not at all."""
        ...


def backend_for(
    spec: DeploySpec,
    store: ArtifactStore,
    model_name: str,
    test: "pd.DataFrame | None" = None,
    labels: "npt.NDArray[np.int8] | None" = None,
) -> CanaryBackend:
    """Kubernetes when the config has a `serving:` section for it, else local servers (which
    send the `test` rows, whose `labels` they know, as canary traffic)."""
    # Imported here: each backend loads its own libraries (the kubernetes client, pandas).
    if spec.kubernetes is not None:
        from steps.deploy.kube import connect

        return connect(spec.kubernetes, model_name)
    from steps.deploy.local import LocalBackend

    return LocalBackend(spec, store, model_name, test, labels)
