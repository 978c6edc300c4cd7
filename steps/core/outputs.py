"""Writing a step's outputs where the workflow reads them: parameters and progress."""

from pathlib import Path

from steps.core.names import PARAMETERS_DIR, Param


def write_parameter(out_dir: Path, name: Param, value: object) -> None:
    """Argo reads an output parameter from a file (`valueFrom.path`); so does the local engine."""
    folder = out_dir / PARAMETERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    (folder / name.value).write_text(text)


def report_progress(progress_file: Path | None, done: int, total: int) -> None:
    """Self-reported progress in Argo's `N/M` format; a no-op outside a workflow."""
    if progress_file is None:
        return
    tmp = progress_file.with_name(progress_file.name + ".tmp")
    tmp.write_text(f"{done}/{total}")
    tmp.replace(progress_file)
