"""Kubernetes settings and RBAC rules as tests compare them."""

from typing import Any

from steps.core.specs import DeploySpec, KubeServingSpec
from tests.support.paths import CLUSTER
from workflows.config import load_config


def kube_spec(*overrides: str) -> KubeServingSpec:
    """The deploy step's kubernetes settings from the cluster config, with `--set` overrides."""
    kubernetes = load_config(CLUSTER, list(overrides)).spec(DeploySpec).kubernetes
    assert kubernetes is not None
    return kubernetes


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (API group, resource, verb) the rules allow."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
