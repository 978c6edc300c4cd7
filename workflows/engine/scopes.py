"""Names a run knows before it starts: the workflow's global variables, a DAG's ancestry,
and the check of the artifact repository's keyFormat against them.

Which `{{...}}` each place of a manifest may use is Argo's rule, checked by validate/ before
the engine looks at a manifest; what is only known while running fails the node naming it.
"""

from collections.abc import Iterable, Mapping

from workflows.engine.errors import VariableError
from workflows.engine.variables import CREATION_TIMESTAMP, tags

GLOBAL_NAMES = frozenset(
    {"workflow.name", "workflow.uid", "workflow.namespace", CREATION_TIMESTAMP}
)


def ancestors(dependencies: Mapping[str, set[str]], task: str) -> set[str]:
    """Every task `task` transitively depends on: the tasks whose outputs it may use."""
    seen: set[str] = set()
    stack = list(dependencies[task])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(dependencies[name])
    return seen


def global_names(parameters: Iterable[str]) -> frozenset[str]:
    return GLOBAL_NAMES | {f"workflow.parameters.{name}" for name in parameters}


def check_key_format(key_format: str, globals_: frozenset[str]) -> None:
    """The keyFormat may use the workflow's globals, `pod.name` and creation time parts."""
    known = globals_ | {"pod.name"}
    for name in tags(key_format):
        part = name.removeprefix(CREATION_TIMESTAMP + ".")
        timestamp_part = name.startswith(CREATION_TIMESTAMP + ".") and (
            part == "RFC3339" or (len(part) == 1 and part.isalpha())
        )
        if name not in known and not timestamp_part:
            raise VariableError(name, "EngineContext.key_format")
