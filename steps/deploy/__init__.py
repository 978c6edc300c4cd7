"""The canary rollout on a local or a Kubernetes backend, and the model registry's move."""
