"""The learning curve a training worker records and the model check draws.

Its own module, free of XGBoost: the model check reads it without importing the trainer.
"""

from steps.core.records import Record

TRAIN_NAME, VALID_NAME = "train", "valid"
"""The evaluation sets' names, as XGBoost reports them and the curve keys them."""


class LearningCurve(Record):
    """`learning-curve.json`: every metric on valid (and on train with
    `train.eval_train_split`), one value per round."""

    rounds: int
    best_iteration: int
    early_stopping_rounds: int | None
    metrics: dict[str, dict[str, list[float]]]
