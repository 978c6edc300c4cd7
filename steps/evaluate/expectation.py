"""What the canary should see, as evaluate measured it: the challenger's and the champion's
score distributions on the same test rows, the PSI between them, and their AUCs.

Recorded in evaluation.json (`expected_scores`); the deploy step's canary analysis
(steps/deploy/canary.py) holds live traffic to it. The buckets are the model server's
score histogram (serving/metrics.py: 20 of width 0.05) merged in pairs, so a live scrape and
this record count scores into the same ten buckets.
"""

import numpy as np
import numpy.typing as npt

from steps.core.records import Record
from steps.drift.stats import psi

SCORE_BOUNDS = tuple(round(0.1 * step, 1) for step in range(1, 11))
"""Upper bounds (inclusive, like Prometheus' `le`) of the ten score buckets."""


class ScoreExpectation(Record):
    rows: int
    bounds: list[float]
    challenger: list[int]
    """Count of the challenger's test-row scores per bucket."""
    challenger_auc: float
    champion_digest: str | None
    champion: list[int] | None
    """The champion's counts on the same rows; None without a champion."""
    champion_auc: float | None
    psi: float | None
    """PSI of the challenger's distribution against the champion's."""


def score_counts(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """Scores per bucket; a score on a bound belongs to the bucket below it (`le`)."""
    buckets = np.searchsorted(SCORE_BOUNDS, scores, side="left")
    counts: npt.NDArray[np.int64] = np.bincount(buckets, minlength=len(SCORE_BOUNDS))
    return counts[: len(SCORE_BOUNDS)]


def expect(
    challenger: npt.NDArray[np.floating],
    challenger_auc: float,
    champion: npt.NDArray[np.floating] | None = None,
    champion_auc: float | None = None,
    champion_digest: str | None = None,
) -> ScoreExpectation:
    """The record of both models' scores on the same rows."""
    ours = score_counts(challenger)
    theirs = None if champion is None else score_counts(champion)
    return ScoreExpectation(
        rows=len(challenger),
        bounds=list(SCORE_BOUNDS),
        challenger=ours.tolist(),
        challenger_auc=challenger_auc,
        champion_digest=champion_digest,
        champion=None if theirs is None else theirs.tolist(),
        champion_auc=champion_auc,
        psi=None if theirs is None else psi(theirs, ours),
    )
