"""The run summary written by the workflow's onExit handler."""
