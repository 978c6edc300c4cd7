"""Images, locally: a container runs its `command` on this machine, not in its image.

No container engine runs here, so an image is never pulled. What the image would have
provided is mapped onto this machine in a few documented ways, and nowhere else:

- a command named `python` (`python3`, `python3.11`, ...) runs with this engine's own
  interpreter (`sys.executable`): the steps use the project's virtualenv the way they use
  the image's Python on a cluster;
- a container without `command` runs its image's entrypoint, which is known only for the
  images in `ENTRYPOINTS` (Argo's test image `argoproj/argosay:v2` is a small program, and
  `shims/argosay.py` does what it does); any other image needs an explicit `command`;
- every other command (`sh`, `echo`, `node`, ...) is this machine's own, found on PATH.
"""

import re
import sys
from pathlib import Path

SHIMS = Path(__file__).parent / "shims"
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")

ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    "argoproj/argosay:v2": (sys.executable, "-I", str(SHIMS / "argosay.py")),
}
"""Image (without registry host) -> the command its ENTRYPOINT runs, on this machine."""


def entrypoint_of(image: str) -> tuple[str, ...] | None:
    name = image.removeprefix("docker.io/").removeprefix("quay.io/")
    return ENTRYPOINTS.get(name)


def host_command(command: list[str]) -> list[str]:
    """`command + args` as this machine runs them (see the module docstring)."""
    if not command:
        return command
    if _PYTHON.fullmatch(Path(command[0]).name):
        return [sys.executable, *command[1:]]
    return command
