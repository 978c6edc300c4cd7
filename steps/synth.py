"""A synthetic customer-churn dataset: the sample data every pipeline run can start from.

Rows are drawn from a known logistic model, so the right answer is learnable but noisy
(a boosted tree reaches AUC ~0.85, not 1.0), and the region effect gives slices that differ.
Everything comes from one seeded numpy Generator: the same rows, seed and parameters give
the same file. Drift scenarios are a different ChurnParams, not a different generator.
"""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.errors import BadInput
from steps.specs import DataSpec

REGIONS = ("north", "south", "east", "west", "central")
PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("credit_card", "bank_transfer", "electronic_check", "mailed_check")
LABEL = "churned"
ROW_KEY = "customer_id"


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


def generate(rows: int, seed: int = 0, params: ChurnParams | None = None) -> pd.DataFrame:
    """`rows` customers with a `churned` label of "yes"/"no"; vectorised, ~0.1 s per 200k."""
    if rows < 1:
        raise BadInput(f"synth: --rows must be at least 1, got {rows}")
    p = params or ChurnParams()
    rng = np.random.default_rng(seed)

    region = _choice(rng, len(REGIONS), p.region_weights, rows)
    plan = _choice(rng, len(PLANS), p.plan_weights, rows)
    contract = _choice(rng, len(CONTRACTS), p.contract_weights, rows)
    payment = _choice(rng, len(PAYMENT_METHODS), p.payment_weights, rows)

    # Longer contracts keep customers longer; tenure is whole months, 0-72.
    tenure_scale = np.array([10.0, 22.0, 34.0])[contract]
    tenure = np.clip(rng.gamma(1.5, tenure_scale), 0, 72).astype(np.int64)
    usage = np.round(rng.lognormal(np.log([8.0, 20.0, 45.0])[plan], 0.6), 2)
    charge = np.array(p.plan_base_charge)[plan] + 0.2 * usage + rng.normal(0, 8, rows)
    monthly = np.round(np.clip(charge, 10, None), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, rows), 2)
    support_calls = rng.poisson(np.array([2.0, 1.3, 0.8])[plan])
    age = np.clip(np.round(rng.normal(45, 14, rows)), 18, 90)

    logit = (
        np.array(p.region_effects)[region]
        + np.array([1.4, 0.0, -1.1])[contract]
        - 0.05 * tenure
        + 0.022 * (monthly - 60)
        + 0.5 * support_calls
        + np.array([0.0, -0.1, 0.7, 0.1])[payment]
        - 0.02 * (age - 45)
        + 0.01 * (usage - 20)
    )
    churned = rng.random(rows) < _sigmoid(logit + _intercept(logit, p.churn_rate))

    total[rng.random(rows) < p.missing_total_charges] = np.nan
    age[rng.random(rows) < p.missing_age] = np.nan
    return pd.DataFrame(
        {
            ROW_KEY: [f"C{i:09d}" for i in range(rows)],
            "region": np.array(REGIONS)[region],
            "plan": np.array(PLANS)[plan],
            "contract": np.array(CONTRACTS)[contract],
            "payment_method": np.array(PAYMENT_METHODS)[payment],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls.astype(np.int64),
            "age": age,
            "usage_gb": usage,
            LABEL: np.where(churned, "yes", "no"),
        }
    )


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _choice(
    rng: np.random.Generator, size: int, weights: tuple[float, ...], rows: int
) -> npt.NDArray[np.int64]:
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(size, size=rows, p=w / w.sum())


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


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps synth", description=__doc__)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_table(generate(args.rows, args.seed), args.out)
    return 0
