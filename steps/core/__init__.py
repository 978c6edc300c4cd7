"""The shared basics every step, the workflow definitions and the engine import: names,
errors, the artifact store, specs, outputs, attestation, the step registry and harness."""
