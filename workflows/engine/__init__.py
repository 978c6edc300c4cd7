"""The local engine: runs compiled Argo Workflows YAML on one machine.

Same manifest, two engines: `run_workflow` executes the very dicts `mlpipe compile` writes
(DAG order, parameters, artifacts in the artifact repository's key layout, `when`, retries,
daemons). Before anything runs it applies Argo v4's validation rules (engine/validate/), then
refuses any field it does not implement.
"""

from workflows.engine.context import DEFAULT_KEY_FORMAT, EngineContext
from workflows.engine.errors import ArgoRuleError, ManifestError, UnsupportedField, VariableError
from workflows.engine.observer import Observer
from workflows.engine.result import (
    NodeKind,
    NodePhase,
    NodeResult,
    RunResult,
    WorkflowPhase,
)
from workflows.engine.run import check_workflow, run_workflow

__all__ = [
    "DEFAULT_KEY_FORMAT",
    "ArgoRuleError",
    "EngineContext",
    "ManifestError",
    "NodeKind",
    "NodePhase",
    "NodeResult",
    "Observer",
    "RunResult",
    "UnsupportedField",
    "VariableError",
    "WorkflowPhase",
    "check_workflow",
    "run_workflow",
]
