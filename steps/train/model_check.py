"""The check after distributed training: `python -m steps model-check ...`.

Every worker of the group must end with the same model; if their digests differ the
collective went wrong (a worker trained on its own), and nothing downstream should use
any of them. When they agree, the bundle worker 0 uploaded is fetched, checked against
the agreed digest, and becomes the `model` artifact, with its learning curve drawn.
"""

import shutil
import tempfile
from html import escape
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from steps.core.errors import BadInput, GateFailed, StorageError
from steps.core.harness import Outcome, StepContext
from steps.core.names import Artifact, ModelFile, Param, model_prefix
from steps.core.registry import WORKER_OUTPUTS
from steps.core.store import ArtifactStore, file_sha256
from steps.train.curve import TRAIN_NAME, VALID_NAME, LearningCurve


class WorkerOutput(BaseModel):
    """One worker's output parameters, as Argo aggregates them (values arrive as text)."""

    # Argo aggregates every output parameter of the fan-out; only these three matter here.
    model_config = ConfigDict(extra="ignore", frozen=True)

    model_digest: str
    best_iteration: int
    valid_auc: float


def parse_worker_outputs(text: str) -> list[WorkerOutput]:
    try:
        outputs = TypeAdapter(list[WorkerOutput]).validate_json(text)
    except ValidationError as error:
        reason = " ".join(str(error).split())
        raise BadInput(f"--worker-outputs is not a JSON list of worker outputs: {reason}") from None
    if not outputs:
        raise BadInput("--worker-outputs is empty: no worker reported a model")
    return outputs


def agreed_output(outputs: list[WorkerOutput]) -> WorkerOutput:
    """The output all workers share; GateFailed naming who disagrees otherwise.

    Workers are numbered by their position in the list (Argo keeps fan-out order)."""
    by_digest: dict[str, list[int]] = {}
    for index, output in enumerate(outputs):
        by_digest.setdefault(output.model_digest, []).append(index)
    if len(by_digest) > 1:
        groups = "; ".join(
            f"worker{'s' if len(workers) > 1 else ''} {', '.join(map(str, workers))}: {digest}"
            for digest, workers in by_digest.items()
        )
        raise GateFailed(
            f"the {len(outputs)} training workers ended with {len(by_digest)} different models "
            f"({groups}); distributed training must give every worker the same model"
        )
    return outputs[0]


def fetch_model(store: ArtifactStore, digest: str, folder: Path) -> None:
    """Download `models/<digest>/` into `folder`, complete and matching the digest, or
    leave `folder` untouched."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-", dir=folder.parent) as tmp:
        staging = Path(tmp) / "model"
        files = store.download_dir(model_prefix(digest), staging)
        missing = sorted(set(ModelFile) - set(files))
        if missing:
            raise StorageError(
                f"model bundle {store.uri(model_prefix(digest))} lacks {', '.join(missing)}"
            )
        actual = file_sha256(staging / ModelFile.BOOSTER)
        if actual != digest:
            raise StorageError(
                f"{store.uri(model_prefix(digest))}/{ModelFile.BOOSTER} has sha256 {actual}, "
                f"not the digest the workers reported ({digest})"
            )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)


# Chart geometry, in SVG user units.
PANEL_WIDTH, PANEL_HEIGHT = 360, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 44, 40
COLORS = {TRAIN_NAME: "#1f77b4", VALID_NAME: "#ff7f0e"}
TITLES = {"auc": "AUC", "logloss": "log loss"}


def learning_curve_svg(curve: LearningCurve) -> str:
    """A static SVG (no scripts, no external references): one panel per metric, train and
    valid per round, the best iteration marked."""
    metrics = list(next(iter(curve.metrics.values()), {}))
    width = PANEL_WIDTH * max(len(metrics), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_HEIGHT}" '
        f'viewBox="0 0 {width} {PANEL_HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>Learning curve: best iteration {curve.best_iteration} "
        f"of {curve.rounds} rounds</title>",
        f'<rect width="{width}" height="{PANEL_HEIGHT}" fill="white"/>',
    ]
    for index, metric in enumerate(metrics):
        series = {data: values[metric] for data, values in curve.metrics.items()}
        parts += _panel(metric, series, curve.best_iteration, index * PANEL_WIDTH)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(metric: str, series: dict[str, list[float]], best: int, left: float) -> list[str]:
    values = [value for line in series.values() for value in line]
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    rounds = max(len(line) for line in series.values())
    x0, x1 = left + MARGIN_LEFT, left + PANEL_WIDTH - MARGIN_RIGHT
    y0, y1 = PANEL_HEIGHT - MARGIN_BOTTOM, MARGIN_TOP

    def x(step: float) -> float:
        return x0 + (x1 - x0) * (step / max(rounds - 1, 1))

    def y(value: float) -> float:
        return y0 + (y1 - y0) * ((value - low) / (high - low))

    title = escape(TITLES.get(metric, metric))
    parts = [
        f'<text x="{(x0 + x1) / 2:.1f}" y="18" text-anchor="middle" font-size="13">{title}</text>',
        f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{x1 - x0:.1f}" height="{y0 - y1:.1f}" '
        'fill="none" stroke="#999"/>',
    ]
    for tick in range(5):
        value = low + (high - low) * tick / 4
        parts.append(
            f'<text x="{x0 - 4:.1f}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>'
        )
    for step in sorted({0, rounds - 1}):
        parts.append(
            f'<text x="{x(step):.1f}" y="{y0 + 14:.1f}" text-anchor="middle">{step}</text>'
        )
    parts.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{PANEL_HEIGHT - 6}" text-anchor="middle">round</text>'
    )
    parts.append(
        f'<line x1="{x(best):.1f}" y1="{y1:.1f}" x2="{x(best):.1f}" y2="{y0:.1f}" '
        f'stroke="#2ca02c" stroke-dasharray="4 3"><title>best iteration {best}</title></line>'
    )
    for position, (data, line) in enumerate(series.items()):
        points = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in enumerate(line))
        color = COLORS.get(data, "#555")
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5">'
            f"<title>{escape(data)} {title}</title></polyline>"
        )
        # The legend sits in the top margin, where no line can cross it.
        legend_x = x0 + 64 * position
        parts.append(
            f'<line x1="{legend_x:.1f}" y1="{y1 - 8:.1f}" x2="{legend_x + 14:.1f}" '
            f'y2="{y1 - 8:.1f}" stroke="{color}" stroke-width="2"/>'
            f'<text x="{legend_x + 18:.1f}" y="{y1 - 4:.1f}">{escape(data)}</text>'
        )
    return parts


def run(ctx: StepContext) -> Outcome:
    agreed = agreed_output(parse_worker_outputs(ctx.get(WORKER_OUTPUTS)))
    model_dir = ctx.output(Artifact.MODEL)
    fetch_model(ctx.store, agreed.model_digest, model_dir)
    curve = LearningCurve.model_validate_json((model_dir / ModelFile.LEARNING_CURVE).read_bytes())
    ctx.output(Artifact.LEARNING_CURVE).write_text(learning_curve_svg(curve))
    return Outcome(
        parameters={
            Param.MODEL_DIGEST: agreed.model_digest,
            Param.BEST_ITERATION: agreed.best_iteration,
            Param.VALID_AUC: agreed.valid_auc,
        }
    )
