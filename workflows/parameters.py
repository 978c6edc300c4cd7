"""Workflow parameters: the knobs of a submitted run, derived from its steps' declarations.

A run's parameters are the workflow inputs (Origin.WORKFLOW) of its steps
(steps/core/registry.py), each valued from the config, plus the run's config digest and
code version. Each keeps its step input's name, so one spelling travels from
`mlpipe submit --param` through the template input to the step's command line.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from steps.core.registry import (
    DATA_URI,
    MODEL_NAME,
    TRAIN_SPEC,
    WINDOW_URI,
    WORKERS,
    Input,
    Origin,
    StepDef,
)
from workflows.config import ConfigError, LoadedConfig

CONFIG_DIGEST = "config-digest"
"""SHA-256 of the run's step specs: part of the memoization key and of every statement."""
CODE_VERSION = "code-version"
"""The steps' code: image reference on a cluster, package version + git commit locally."""
WORKER_RANKS = "worker-ranks"
"""The workers' ranks as a JSON list: the training fan-out runs `withParam` over it, as Argo
aggregates worker outputs only for withItems/withParam (validate.go). A parameter of the
training group's DAG, not of a step."""


def window_uri(config: LoadedConfig) -> str:
    """The data the drift check looks at: `drift.window_uri`, else what a retraining trains on."""
    pipeline = config.pipeline
    return pipeline.drift.window_uri or pipeline.data.uri


def worker_ranks(workers: int) -> str:
    return json.dumps([str(rank) for rank in range(workers)], separators=(",", ":"))


CONFIG_VALUES: Mapping[str, Callable[[LoadedConfig], str]] = {
    DATA_URI.name: lambda config: config.pipeline.data.uri,
    MODEL_NAME.name: lambda config: config.pipeline.model_name,
    WORKERS.name: lambda config: str(config.pipeline.train.workers),
    WORKER_RANKS: lambda config: worker_ranks(config.pipeline.train.workers),
    WINDOW_URI.name: window_uri,
}
"""The config key behind each workflow parameter that is not a spec (a spec is its section's)."""


def workflow_inputs(steps: Iterable[StepDef]) -> list[Input[Any]]:
    """The steps' workflow inputs, each once, in step order."""
    found: dict[str, Input[Any]] = {}
    for step in steps:
        for item in step.inputs:
            if item.origin is Origin.WORKFLOW:
                found.setdefault(item.name, item)
    return list(found.values())


def parameter_value(item: Input[Any], config: LoadedConfig) -> str:
    """A workflow input's value: a spec as the JSON its step parses, else the config's key."""
    if item.spec is not None:
        return config.spec(item.spec).model_dump_json()
    if item.name not in CONFIG_VALUES:
        raise ConfigError(f"no config key gives workflow parameter {item.name!r}")
    return CONFIG_VALUES[item.name](config)


def workflow_arguments(
    config: LoadedConfig, steps: Iterable[StepDef], extra: Iterable[str] = ()
) -> dict[str, str]:
    """The run's parameter values: the data and every spec first, in step order (what the
    run computes on), then its other values (model name, workers), the `extra` parameters
    of its own DAGs, its digest and code version."""
    inputs = sorted(
        workflow_inputs(steps), key=lambda item: item.spec is None and item is not DATA_URI
    )
    values = {item.name: parameter_value(item, config) for item in inputs}
    values |= {name: CONFIG_VALUES[name](config) for name in extra}
    values[CONFIG_DIGEST] = config_digest(values)
    values[CODE_VERSION] = code_version(config)
    return values


def code_version(config: LoadedConfig) -> str:
    """The code version the provenance chain records: configured, else the steps image."""
    pipeline = config.pipeline
    return pipeline.provenance.code_version or re.sub(
        r"[^a-zA-Z0-9]+", "-", pipeline.argo.steps_image
    )


def config_digest(values: Mapping[str, str]) -> str:
    """SHA-256 of what decides the results: every spec, not where the data is (the data is
    keyed by its dataset digest) nor the tracker's port (a local run picks a free one)."""
    specs: dict[str, object] = {
        name: value for name, value in values.items() if name != DATA_URI.name
    }
    train = json.loads(values[TRAIN_SPEC.name])
    train.pop("tracker_port", None)
    specs[TRAIN_SPEC.name] = train
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()
