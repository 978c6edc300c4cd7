"""Kubernetes RBAC rules as a set a test can compare."""

from typing import Any


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (API group, resource, verb) the rules allow."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
