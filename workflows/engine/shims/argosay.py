"""`argosay`, the entrypoint of Argo's test image argoproj/argosay:v2, for local runs.

Same verbs and output streams as the image's Go program: `echo [text] [file]` (the text goes
to stderr, as Go's println does, or into the file), `cat file...`, `sleep duration`,
`exit code`, `assert_contains file text`; no arguments means `echo`.
"""

import re
import sys
import time
from pathlib import Path

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
USAGE = (
    "usage: argosay [assert_contains file string|cat [file...]|echo [string] [file]"
    "|sleep duration|exit [code]]"
)


def main(args: list[str]) -> int:
    verb, rest = (args[0], args[1:]) if args else ("echo", [])
    if verb == "echo" and len(rest) <= 2:
        if len(rest) < 2:
            print(rest[0] if rest else "hello argo", file=sys.stderr)
            return 0
        target = Path(rest[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rest[0])
        return 0
    if verb == "cat":
        for name in rest:
            sys.stdout.write(Path(name).read_text())
        return 0
    if verb == "sleep" and len(rest) == 1:
        time.sleep(sum(float(n) * _SECONDS[u] for n, u in _DURATION.findall(rest[0])))
        return 0
    if verb == "exit":
        return int(rest[0]) if rest else 0
    if verb == "assert_contains" and len(rest) == 2:
        data = Path(rest[0]).read_text()
        if rest[1] not in data:
            print(f'expected "{rest[0]}" to contain "{rest[1]}", but was "{data}"', file=sys.stderr)
            return 1
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
