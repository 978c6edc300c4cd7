"""Errors the engine raises before anything runs: Argo rejects the manifest, or it cannot be
executed locally.

Failures while running (a step exiting non-zero, a missing output file) are not exceptions:
they become a node's phase and message in the RunResult, as they would on a cluster.
"""

from collections.abc import Sequence

from workflows.engine.validate import Problem


class ManifestError(Exception):
    """A manifest the local engine refuses; the message names the manifest, the place and why."""


class ArgoRuleError(ManifestError):
    """A manifest Argo's own validator rejects: `problems` lists every rule it breaks."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"Argo v4 would reject this manifest:\n{lines}")


class UnsupportedField(ManifestError):
    """A field the local engine does not implement; `path` is its full path in the manifest."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source = source
        self.path = path
        self.reason = reason
        super().__init__(f"{source}: {path}: {reason}")


class VariableError(ManifestError):
    """A `{{...}}` that names nothing in its scope: an unknown parameter, task or output."""

    def __init__(self, name: str, where: str, hint: str = "") -> None:
        self.name = name
        self.where = where
        detail = f"; {hint}" if hint else ""
        super().__init__(f"{where}: unknown variable {{{{{name}}}}}{detail}")
