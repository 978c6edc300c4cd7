"""What every step's command line does, done once.

`python -m steps <name> ...` finds the step in the registry (steps/core/registry.py), builds
its argument parser from the declaration, hands the step a StepContext (its parsed inputs,
the artifact store, progress reporting), and takes back an Outcome: the harness writes the
output parameters, records the provenance statement of an attested step, then raises the
failure the step found (a failed gate is a result too: its outputs and statement exist).

A step module is its computation plus one function, `run(ctx: StepContext) -> Outcome`.
"""

import argparse
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from steps.core.attestation import Resource, attest
from steps.core.errors import MlpipeError
from steps.core.names import ArtifactName, Env, Param
from steps.core.outputs import report_progress, write_parameter
from steps.core.registry import Input, StepDef
from steps.core.specs import Spec
from steps.core.store import ArtifactStore

T = TypeVar("T")
S = TypeVar("S", bound=Spec)
OUT = "out"
"""`--out`: the folder a step writes its output parameters and artifacts under."""


@dataclass(frozen=True)
class Statement:
    """What a step's provenance statement records besides its declared artifacts (its input
    artifacts are dependencies and its output artifacts subjects without saying so)."""

    inputs: Sequence[Resource] = ()
    input_keys: Sequence[str] = ()
    output_keys: Sequence[str] = ()
    """Objects the step wrote to the bucket itself."""
    datasets: Sequence[str] = ()
    """URIs of canonical datasets it read, every file of which counts."""
    parameters: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What a step hands back: its output parameters (every declared one, unless it failed),
    its statement (attested steps; None writes none), and the failure to report last."""

    parameters: Mapping[Param, object] = field(default_factory=dict)
    statement: Statement | None = None
    failure: MlpipeError | None = None


class StepContext:
    """A step's parsed inputs and what its command line gives it: the artifact store (from
    the environment, opened when first used), its output folder, progress reporting."""

    def __init__(
        self, step: StepDef, values: Mapping[str, Any], environ: Mapping[str, str]
    ) -> None:
        self.step = step
        self.values = values
        self.environ = environ
        self.started = datetime.now(UTC)

    def get(self, item: Input[T]) -> T:
        value = self.optional(item)
        if value is None:
            raise KeyError(f"step {self.step.name} was given no --{item.name}")
        return value

    def optional(self, item: Input[T]) -> T | None:
        """An input that may be left out (`required=False`)."""
        return cast(T | None, self.values[self._declared(item)])

    def repeated(self, item: Input[T]) -> list[T]:
        """A repeatable input: every value given, in order."""
        return cast(list[T], self.values[self._declared(item)])

    def spec(self, kind: type[S]) -> S:
        """The step's spec of this model, parsed from its JSON input."""
        for item in self.step.arguments:
            if item.spec is kind:
                return cast(S, self.values[item.name])
        raise KeyError(f"step {self.step.name} takes no {kind.__name__}")

    def _declared(self, item: Input[Any]) -> str:
        if item.name not in {declared.name for declared in self.step.arguments}:
            raise KeyError(f"{item.name} is not an input of step {self.step.name}")
        return item.name

    def artifact(self, artifact: ArtifactName) -> Path:
        """Where the engine placed an input artifact."""
        if artifact not in self.step.input_artifacts:
            raise KeyError(f"{artifact.name} is not an input artifact of step {self.step.name}")
        return cast(Path, self.values[_artifact_dest(artifact)])

    @property
    def out(self) -> Path:
        return cast(Path, self.values[OUT])

    def output(self, artifact: ArtifactName) -> Path:
        """Where an output artifact is written (the output folder is created)."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / artifact.filename

    @property
    def has_store(self) -> bool:
        """The environment names an S3 endpoint: a workflow step's always does."""
        return bool(self.environ.get(Env.S3_ENDPOINT.value))

    @cached_property
    def store(self) -> ArtifactStore:
        """StorageError naming what is missing when the environment configures none."""
        return ArtifactStore.from_env(self.environ)

    @property
    def progress_file(self) -> Path | None:
        """Argo's self-reported progress file; None outside a workflow."""
        path = self.environ.get(Env.PROGRESS_FILE.value)
        return Path(path) if path else None

    def progress(self, done: int, total: int) -> None:
        report_progress(self.progress_file, done, total)


class StepFunction(Protocol):
    def __call__(self, ctx: StepContext) -> Outcome: ...


def parser(step: StepDef, description: str | None = None) -> argparse.ArgumentParser:
    """The step's command line, as its declaration says; what every template passes."""
    # No abbreviations: a template's flag must be the declared name, not a prefix of it.
    parser = argparse.ArgumentParser(
        prog=f"python -m steps {step.name}", description=description, allow_abbrev=False
    )
    for item in step.arguments:
        options: dict[str, Any] = {"type": item.parse, "help": item.help}
        if item.choices:
            options["choices"] = item.choices
        if item.positional:
            parser.add_argument(item.name, nargs="+" if item.repeated else None, **options)
            continue
        if item.flag:
            parser.add_argument(
                f"--{item.name}", dest=item.name, action="store_true", help=item.help
            )
            continue
        if item.repeated:
            options.update(action="append", default=[])
        elif item.default is not None:
            options["default"] = item.default
        else:
            options["required"] = item.required
        parser.add_argument(f"--{item.name}", dest=item.name, **options)
    for artifact in step.input_artifacts:
        parser.add_argument(
            f"--{artifact.name}",
            dest=_artifact_dest(artifact),
            type=Path,
            required=True,
            help=f"the {artifact.name} artifact ({artifact.filename})",
        )
    if step.writes_outputs:
        parser.add_argument(
            f"--{OUT}", dest=OUT, type=Path, required=True, help="folder for the outputs"
        )
    return parser


def run(step: StepDef, argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run one step as its container does; a failure it reports is raised as MlpipeError."""
    module = importlib.import_module(step.module)
    compute = cast(StepFunction, module.run)
    arguments = parser(step, module.__doc__).parse_args(list(argv))
    ctx = StepContext(step, vars(arguments), os.environ if environ is None else environ)
    outcome = compute(ctx)
    _check(step, outcome)
    for name, value in outcome.parameters.items():
        write_parameter(ctx.out, name, value)
    statement = outcome.statement
    if statement is not None:
        attest(
            step.name,
            ctx.out,
            ctx.store if ctx.has_store else None,
            ctx.started,
            outputs=[ctx.out / artifact.filename for artifact in step.artifacts],
            output_keys=statement.output_keys,
            inputs=statement.inputs,
            input_paths=[ctx.artifact(artifact) for artifact in step.input_artifacts],
            input_keys=statement.input_keys,
            datasets=statement.datasets,
            parameters=statement.parameters,
            environ=ctx.environ,
        )
    if outcome.failure is not None:
        raise outcome.failure
    return 0


def _check(step: StepDef, outcome: Outcome) -> None:
    """A step's outcome must match its declaration: the manifest reads what it declares."""
    written, declared = set(outcome.parameters), set(step.outputs)
    if not written <= declared or (outcome.failure is None and written != declared):
        raise RuntimeError(
            f"step {step.name} wrote parameters {sorted(written)}, declares {sorted(declared)}"
        )
    if outcome.statement is not None and not step.attested:
        raise RuntimeError(f"step {step.name} is not declared attested but made a statement")


def _artifact_dest(artifact: ArtifactName) -> str:
    return f"artifact:{artifact.name}"
