"""A synthetic customer-churn dataset: the sample data every pipeline run can start from.

Rows are drawn from a known logistic model, so the right answer is learnable but noisy
(a boosted tree reaches AUC ~0.85, not 1.0), and the region effect gives slices that differ.
Everything comes from one seeded numpy Generator: the same rows, seed and parameters give
the same file. Drift scenarios are a different ChurnParams, not a different generator.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.errors import BadInput
from steps.core.harness import Outcome, StepContext
from steps.core.registry import (
    CHARGES_SCALE,
    CONCEPT_DRIFT,
    COVARIATE_DRIFT,
    NEW_CATEGORY,
    OUT_FILE,
    ROWS,
    SEED,
)
from steps.core.specs import DataSpec

REGIONS = ("north", "south", "east", "west", "central")
PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("credit_card", "bank_transfer", "electronic_check", "mailed_check")
LABEL = "churned"
ROW_KEY = "customer_id"
NUMERIC = ("tenure_months", "monthly_charges", "total_charges", "support_calls", "age", "usage_gb")
CATEGORIES = {
    "region": REGIONS,
    "plan": PLANS,
    "contract": CONTRACTS,
    "payment_method": PAYMENT_METHODS,
}


@dataclass(frozen=True)
class ChurnParams:
    """The population: category mixes and how strongly each feature drives churn.

    Category weights are relative (normalised when drawn); `churn_rate` is the target share
    of positives, met by solving for the model's intercept on the drawn features.
    """

    region_weights: tuple[float, ...] = (0.35, 0.25, 0.2, 0.12, 0.08)
    region_effects: tuple[float, ...] = (0.0, 0.4, -0.3, 0.7, -0.6)
    plan_weights: tuple[float, ...] = (0.5, 0.35, 0.15)
    contract_weights: tuple[float, ...] = (0.55, 0.25, 0.2)
    payment_weights: tuple[float, ...] = (0.3, 0.25, 0.3, 0.15)
    plan_base_charge: tuple[float, ...] = (25.0, 55.0, 90.0)
    churn_rate: float = 0.2
    missing_total_charges: float = 0.03
    missing_age: float = 0.01
    covariate_drift: tuple[tuple[str, float], ...] = ()
    """(feature, strength): a numeric feature moves by `strength` standard deviations; a
    categorical feature's mix tilts towards its later categories (weights times
    exp(strength * r), r from -1 for the first category to 1 for the last). Labels come
    from the same model, so P(x) changes and P(y | x) does not."""
    new_categories: tuple[tuple[str, str, float], ...] = ()
    """(feature, value, share): that share of rows shows a category training never saw; a
    row's label still comes from the category the new value replaced."""
    concept_drift: float = 0.0
    """0 to 1: the contract, tenure and support-call effects on churn fade (0.5 cancels
    them) and then reverse (1), so P(y | x) changes while P(x) does not."""
    charges_scale: float = 1.0
    """A corrupted feed, not drift: both charges multiplied after the labels were drawn, as
    when a source switches from dollars to cents (the expectation suite's bounds catch it)."""

    def __post_init__(self) -> None:
        sizes = {
            "region_weights": len(REGIONS),
            "region_effects": len(REGIONS),
            "plan_weights": len(PLANS),
            "contract_weights": len(CONTRACTS),
            "payment_weights": len(PAYMENT_METHODS),
            "plan_base_charge": len(PLANS),
        }
        for name, size in sizes.items():
            if len(getattr(self, name)) != size:
                raise BadInput(f"synth: {name} needs {size} values, got {getattr(self, name)}")
        if not 0 < self.churn_rate < 1:
            raise BadInput(f"synth: churn_rate must be in (0, 1), got {self.churn_rate}")
        for feature, strength in self.covariate_drift:
            if feature not in NUMERIC and feature not in CATEGORIES:
                known = ", ".join([*NUMERIC, *CATEGORIES])
                raise BadInput(f"synth: covariate drift on unknown feature {feature!r}; {known}")
            if not np.isfinite(strength):
                raise BadInput(f"synth: covariate drift strength for {feature} must be finite")
        for feature, value, share in self.new_categories:
            if feature not in CATEGORIES:
                raise BadInput(
                    f"synth: new category for {feature!r}: categorical features are "
                    f"{', '.join(CATEGORIES)}"
                )
            if value in CATEGORIES[feature] or not value:
                raise BadInput(f"synth: {value!r} is not a new category of {feature}")
            if not 0 < share <= 1:
                raise BadInput(f"synth: share of new category {value!r} must be in (0, 1]")
        if not 0 <= self.concept_drift <= 1:
            raise BadInput(f"synth: concept_drift must be in [0, 1], got {self.concept_drift}")
        if not (np.isfinite(self.charges_scale) and self.charges_scale > 0):
            raise BadInput(f"synth: charges_scale must be positive, got {self.charges_scale}")


def generate(rows: int, seed: int = 0, params: ChurnParams | None = None) -> pd.DataFrame:
    """`rows` customers with a `churned` label of "yes"/"no"; vectorised, ~0.1 s per 200k."""
    if rows < 1:
        raise BadInput(f"synth: --rows must be at least 1, got {rows}")
    p = params or ChurnParams()
    rng = np.random.default_rng(seed)
    x, logit = _population(rng, rows, p)
    if p.covariate_drift:
        # Covariate drift must leave P(y | x) alone: keep the undrifted population's
        # intercept instead of solving again for churn_rate (the rate moves with x).
        _, base = _population(np.random.default_rng(seed), rows, replace(p, covariate_drift=()))
        intercept = _intercept(base, p.churn_rate)
    else:
        intercept = _intercept(logit, p.churn_rate)
    churned = rng.random(rows) < _sigmoid(logit + intercept)

    total, age = x["total_charges"], x["age"]
    total[rng.random(rows) < p.missing_total_charges] = np.nan
    age[rng.random(rows) < p.missing_age] = np.nan
    categorical = {
        name: np.array(values, dtype=object)[x[name]] for name, values in CATEGORIES.items()
    }
    # Drawn last, so the rows without new categories are those of the undrifted population.
    for feature, value, share in p.new_categories:
        categorical[feature][rng.random(rows) < share] = value
    return pd.DataFrame(
        {
            ROW_KEY: [f"C{i:09d}" for i in range(rows)],
            **categorical,
            "tenure_months": x["tenure_months"].astype(np.int64),
            "monthly_charges": np.multiply(x["monthly_charges"], p.charges_scale),
            "total_charges": np.multiply(total, p.charges_scale),
            "support_calls": x["support_calls"].astype(np.int64),
            "age": age,
            "usage_gb": x["usage_gb"],
            LABEL: np.where(churned, "yes", "no"),
        }
    )


def _population(
    rng: np.random.Generator, rows: int, p: ChurnParams
) -> tuple[dict[str, npt.NDArray[np.generic]], npt.NDArray[np.float64]]:
    """The features (categories as indices) and each row's churn logit before the intercept."""
    shift = dict(p.covariate_drift)
    region = _choice(rng, len(REGIONS), _tilt(p.region_weights, shift.get("region")), rows)
    plan = _choice(rng, len(PLANS), _tilt(p.plan_weights, shift.get("plan")), rows)
    contract = _choice(rng, len(CONTRACTS), _tilt(p.contract_weights, shift.get("contract")), rows)
    payment = _choice(
        rng, len(PAYMENT_METHODS), _tilt(p.payment_weights, shift.get("payment_method")), rows
    )

    # Longer contracts keep customers longer; tenure is whole months, 0-72. Each numeric
    # feature drifts before the features derived from it are computed, so they stay coherent.
    tenure_scale = np.array([10.0, 22.0, 34.0])[contract]
    tenure = np.clip(rng.gamma(1.5, tenure_scale), 0, 72).astype(np.int64)
    tenure = np.round(_shift(tenure, shift.get("tenure_months"), 0)).astype(np.int64)
    usage = rng.lognormal(np.log([8.0, 20.0, 45.0])[plan], 0.6)
    usage = np.round(_shift(usage, shift.get("usage_gb"), 0), 2)
    charge = np.array(p.plan_base_charge)[plan] + 0.2 * usage + rng.normal(0, 8, rows)
    monthly = np.round(_shift(np.clip(charge, 10, None), shift.get("monthly_charges"), 0), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, rows), 2)
    total = np.round(_shift(total, shift.get("total_charges"), 0), 2)
    support_calls = rng.poisson(np.array([2.0, 1.3, 0.8])[plan])
    support_calls = np.round(_shift(support_calls, shift.get("support_calls"), 0))
    age = np.clip(np.round(rng.normal(45, 14, rows)), 18, 90)
    age = np.round(_shift(age, shift.get("age"), 18))

    # Concept drift turns the contract, tenure and support-call effects around (`turn` is
    # exactly 1.0 without it, so the undrifted rows are bit for bit what they always were).
    turn = 1 - 2 * p.concept_drift
    logit: npt.NDArray[np.float64] = (
        np.array(p.region_effects)[region]
        + turn * np.array([1.4, 0.0, -1.1])[contract]
        - turn * 0.05 * tenure
        + 0.022 * (monthly - 60)
        + turn * 0.5 * support_calls
        + np.array([0.0, -0.1, 0.7, 0.1])[payment]
        - 0.02 * (age - 45)
        + 0.01 * (usage - 20)
    )
    features: dict[str, npt.NDArray[np.generic]] = {
        "region": region,
        "plan": plan,
        "contract": contract,
        "payment_method": payment,
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total,
        "support_calls": support_calls,
        "age": age,
        "usage_gb": usage,
    }
    return features, logit


def data_spec() -> DataSpec:
    """How the pipeline should read what `generate` writes."""
    return DataSpec(
        label=LABEL,
        positive_class="yes",
        categorical=["region", "plan", "contract", "payment_method"],
        slice_column="region",
        row_key=ROW_KEY,
    )


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Parquet or CSV by extension; written beside `out` and renamed, never half a file."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BadInput(f"synth: --out {out}: extension must be .parquet or .csv")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        tmp.replace(out)
    except OSError as error:
        raise BadInput(f"synth: --out {out}: cannot write it: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)


def _choice(
    rng: np.random.Generator, size: int, weights: tuple[float, ...], rows: int
) -> npt.NDArray[np.int64]:
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(size, size=rows, p=w / w.sum())


def _tilt(weights: tuple[float, ...], strength: float | None) -> tuple[float, ...]:
    """Category weights leaning towards the later categories (strength > 0) or the first."""
    if strength is None:
        return weights
    ranks = np.linspace(-1, 1, len(weights))
    return tuple(float(w) for w in np.asarray(weights) * np.exp(strength * ranks))


def _shift(
    values: npt.NDArray[np.generic], strength: float | None, floor: float
) -> npt.NDArray[np.float64]:
    """`values` moved by `strength` of their standard deviations, kept at or above `floor`."""
    moved = values.astype(np.float64)
    if strength is None:
        return moved
    result: npt.NDArray[np.float64] = np.maximum(moved + strength * moved.std(), floor)
    return result


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result


def _intercept(logit: npt.NDArray[np.float64], rate: float) -> float:
    """The shift that makes the mean churn probability `rate` (bisection: it is monotone)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if float(_sigmoid(logit + mid).mean()) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def run(ctx: StepContext) -> Outcome:
    params = ChurnParams(
        covariate_drift=tuple(_covariate_drift(text) for text in ctx.repeated(COVARIATE_DRIFT)),
        new_categories=tuple(_new_category(text) for text in ctx.repeated(NEW_CATEGORY)),
        concept_drift=ctx.get(CONCEPT_DRIFT),
        charges_scale=ctx.get(CHARGES_SCALE),
    )
    write_table(generate(ctx.get(ROWS), ctx.get(SEED), params), ctx.get(OUT_FILE))
    return Outcome()


def _covariate_drift(text: str) -> tuple[str, float]:
    feature, sep, strength = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return feature, float(strength)
    except ValueError:
        raise BadInput(
            f"synth: --covariate-drift {text!r}: expected FEATURE=STRENGTH, e.g. age=1.5"
        ) from None


def _new_category(text: str) -> tuple[str, str, float]:
    feature, sep, rest = text.partition("=")
    value, colon, share = rest.rpartition(":")
    try:
        if not (sep and colon):
            raise ValueError
        return feature, value, float(share)
    except ValueError:
        raise BadInput(
            f"synth: --new-category {text!r}: expected FEATURE=VALUE:SHARE, e.g. "
            "plan=enterprise:0.1"
        ) from None
