"""`python -m steps init`: what a dataset means, inferred and written as three files the user
owns and edits: a pipeline config, a GX-native expectation suite and a slices file, each
choice with the reason for it.

`mlpipe init --data FILE --label COLUMN` runs this into a folder of the user's; `mlpipe run
--data FILE --label COLUMN` runs it into `.mlpipe/inferred/` and trains with what it wrote.
The inference is steps/data/infer.py (columns), steps/audit/suite_inference.py (the suite)
and steps/evaluate/slice_inference.py (slices). The files appear together or not at all.
"""

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from steps.audit.suite_inference import infer_suite
from steps.core.errors import BadInput
from steps.core.names import InitFile
from steps.core.specs import DataSpec
from steps.data.dataset import is_s3_uri, map_label, read_table
from steps.data.infer import Inferred, infer, model_name_for
from steps.evaluate.slice_inference import InferredSlice, infer_slices

CONFIG_FILE, SUITE_FILE, SLICES_FILE = (f.value for f in InitFile)
MIN_SLICE_ROWS = 100
COMMENT_COLUMN = 40


def init_files(
    path: Path, label: str, positive_class: str | None, out: Path, command: str
) -> dict[str, str]:
    """The three files' contents for the data at `path`, by file name."""
    inferred = infer(path, label, positive_class)
    frame = read_table(str(path), inferred.data, None)
    labels = map_label(frame[label], label, inferred.data.positive_class, str(path)).to_numpy()
    slices = infer_slices(frame, inferred.data, labels)
    slice_column = next((s.group.by[0].column for s in slices if s.group.by[0].bins is None), None)
    data = inferred.data.model_copy(update={"slice_column": slice_column})
    choices = [c.describe() for c in inferred.choices]
    origin = {
        "source": path.name,
        "rows": inferred.rows,
        "command": command,
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "choices": choices,
    }
    suite = infer_suite(frame, data, f"{inferred.model_name}-inferred", origin)
    uri = os.path.relpath(path.absolute(), out.absolute())
    return {
        CONFIG_FILE: render_config(inferred, data, uri, slices, command),
        SUITE_FILE: json.dumps(suite, indent=2, ensure_ascii=False) + "\n",
        SLICES_FILE: render_slices(slices, path.name, command),
    }


def _scalar(value: object) -> str:
    """A YAML scalar: JSON's spelling, which YAML reads back as the same value and type."""
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _line(text: str, comment: str) -> str:
    comment = " ".join(comment.split())
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else text


def _listed(key: str, names: list[str], inferred: Inferred, empty_reason: str) -> list[str]:
    if not names:
        return [_line(f"  {key}: []", empty_reason)]
    return [f"  {key}:", *(_line(f"    - {_scalar(n)}", inferred.reason(n)) for n in names)]


def render_config(
    inferred: Inferred, data: DataSpec, uri: str, slices: list[InferredSlice], command: str
) -> str:
    """The pipeline config: the data section, and where the suite and slices files are."""
    positive = next(c for c in inferred.choices if c.column == data.label)
    markers = next((c for c in inferred.choices if c.decision.startswith("missing markers")), None)
    slice_reason = "no categorical feature with few values"
    if data.slice_column is not None:
        slice_reason = "the most predictive categorical feature with few values: the audit's "
        slice_reason += "per-slice label-rate check and quantize's per-slice AUC use it"
    lines = [
        f"# mlpipe config inferred by `{command}` from {uri} ({inferred.rows} rows, "
        f"{len(inferred.columns)} columns).",
        "# Every choice says why; this file and the two beside it are yours to edit. Keys not",
        "# set here take the code's defaults: `mlpipe config show --config <this file>` prints",
        "# them all. Relative paths are relative to this file's folder.",
        _line(f"model_name: {inferred.model_name}", "the data file's name"),
        "",
        "data:",
        _line(f"  uri: {_scalar(uri)}", "relative to this file"),
        _line(f"  label: {_scalar(data.label)}", ""),
        _line(f"  positive_class: {_scalar(data.positive_class)}", positive.reason),
        _line(
            f"  row_key: {_scalar(data.row_key)}",
            inferred.reason(data.row_key)
            if data.row_key
            else "no column is unique per row: rows are split by a hash of their content",
        ),
        *_listed("categorical", data.categorical, inferred, "no text or coded columns"),
        *_listed("exclude", data.exclude, inferred, "every other column is a feature"),
        _line(
            f"  missing_values: {_scalar(data.missing_values)}",
            markers.reason if markers else "only empty cells were found missing",
        ),
        _line(f"  slice_column: {_scalar(data.slice_column)}", slice_reason),
        "",
        "audit:",
        _line(f"  suite_file: {SUITE_FILE}", "GX suite inferred from this data's profile"),
        "",
        "evaluate:",
        _line(
            f"  slices_file: {SLICES_FILE}",
            f"{len(slices)} slice groups inferred from this data",
        ),
    ]
    numeric = [c for c in inferred.choices if c.decision == "numeric"]
    if numeric:
        lines += ["", "# Numeric features (every other column):"]
        lines += [f"#   {c.column}: {c.reason}" for c in numeric]
    return "\n".join(lines) + "\n"


def render_slices(slices: list[InferredSlice], source: str, command: str) -> str:
    """The slices file (EvaluateSpec's slices, min_slice_rows and checks)."""
    lines = [
        f"# Slices of the test split for the evaluate step, inferred by `{command}` from {source}:",
        "# each categorical feature with few values, and quartiles of the numeric features that",
        "# predict the label best on their own (single-feature AUC: the model does not exist yet).",
        _line(f"min_slice_rows: {MIN_SLICE_ROWS}", "smaller slices are listed, not judged"),
    ]
    if not slices:
        lines.append(_line("slices: []", "no categorical or numeric feature to slice by"))
    else:
        lines.append("slices:")
        for piece in slices:
            axes = ", ".join(
                "{column: " + _scalar(axis.column)
                + ("" if axis.bins is None else f", bins: {_scalar(axis.bins)}") + "}"
                for axis in piece.group.by
            )  # fmt: skip
            lines.append(_line(f"  - by: [{axes}]", piece.reason))
    lines.append(_line("checks: []", "behavioural checks need domain knowledge: add your own"))
    return "\n".join(lines) + "\n"


def write_files(files: dict[str, str], out: Path, force: bool) -> list[Path]:
    """Write every file into `out`, all or none; existing files only with `force`."""
    targets = [out / name for name in files]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise BadInput(
            f"{', '.join(existing)} already exist(s) and may hold your edits: remove them, "
            "or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".init-", dir=out) as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            for name in files:
                os.replace(Path(tmp) / name, out / name)
    except OSError as error:
        raise BadInput(f"cannot write to {out}: {error.strerror}") from error
    return targets


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps init", description=__doc__)
    parser.add_argument("--data", required=True, help="a local CSV or Parquet file")
    parser.add_argument("--label", required=True, help="the binary label column")
    parser.add_argument("--positive-class", help="the label value that is positive")
    parser.add_argument("--out", type=Path, help="folder for the three files (config/<model>)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument("--command", default="mlpipe init", help="named in the files' comments")
    args = parser.parse_args(argv)
    if is_s3_uri(args.data):
        raise BadInput(f"init reads a local file; download {args.data} first")
    path = Path(args.data)
    out = args.out or Path("config") / model_name_for(path)
    files = init_files(path, args.label, args.positive_class, out, args.command)
    for written in write_files(files, out, args.force):
        print(written)
    return 0
