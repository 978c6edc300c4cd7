"""`python -m workflows.cli`: the `mlpipe` command without the installed entry point."""

from workflows.cli import main

main()
