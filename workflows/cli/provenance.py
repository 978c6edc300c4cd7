"""`mlpipe provenance show|verify RUN`: the chain of statements behind a run."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from steps.core.registry import CHAIN
from workflows.cli.options import ConfigOption, RunArgument, SetOption, load
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="The provenance chain of a run: show it, verify it.")

PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Ed25519 PEM; default: the configured signing key when signing is on.",
    ),
]


def _chain(action: str, run: str, config: Path, set_: list[str] | None, key: Path | None) -> None:
    """`python -m steps chain ...` against the run's bucket: the CLI never runs step code."""
    from workflows.local_run import s3_for, step_environment

    pipeline = load(config, set_).pipeline
    provenance = pipeline.provenance
    if key is None and provenance.signing and provenance.signing_key is not None:
        key = provenance.signing_key
    command = [sys.executable, "-m", "steps", CHAIN.name.value, action, "--run", run]
    if key is not None:
        command += ["--public-key", str(key)]
    environ = dict(os.environ)
    with s3_for(pipeline, environ) as access:
        env = {**environ, **step_environment(access, pipeline)}
        code = subprocess.run(command, env=env, check=False).returncode
    raise typer.Exit(code)


@app.command("show")
def provenance_show(
    run: RunArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Print the chain of statements behind a run, from the data to the deployed model."""
    _chain("show", run, config, set_, public_key)


@app.command("verify")
def provenance_verify(
    run: RunArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Re-download every artifact in the run's chain and check digests (and signatures);
    exits 1 on the first mismatch, naming it."""
    _chain("verify", run, config, set_, public_key)
