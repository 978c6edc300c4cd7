"""A file as users have them, for `mlpipe init` and `mlpipe run --label` tests."""

import numpy as np
import pandas as pd


def own_data(rows: int, seed: int = 0) -> pd.DataFrame:
    """Columns as real files have them: an ID, names with spaces and accents, '?' for missing,
    integer codes, free text, and a yes/no label that depends on three of the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    région = rng.choice(["nord", "sud", "est", "ouest"], rows)
    plan = rng.integers(1, 4, rows)
    balance = rng.gamma(2.0, 500.0, rows).round(2)
    logit = -2.0 + 0.04 * (age - 45) + (région == "est") * 1.2 + (plan == 3) * 0.8
    logit += balance / 1500
    label = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "client id": rng.permutation(rows) + 10_000,
            "région": région,
            "account age": age,
            "plan": plan,
            "balance €": balance,
            "note": [f"called on day {i}" for i in rng.integers(0, 10**6, rows)],
            "churned?": label,
        }
    )
    frame["région"] = frame["région"].where(rng.random(rows) > 0.05, "?")
    return frame
