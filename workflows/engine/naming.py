"""Names exactly as Argo forms them: node names, node IDs, pod names, fan-out items.

Keys in the artifact repository contain the pod name, so matching Argo's algorithm (pod
name version v2, `workflow/util/pod_name.go`) is what makes a local run's artifacts sit
where a cluster run of the same manifest would put them.
"""

import secrets
from collections.abc import Mapping

from pydantic import JsonValue

from workflows.engine.variables import json_text

MAX_NAME_LENGTH = 253
HASH_LENGTH = 10
_K8S_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(text: str) -> int:
    """FNV-1a, 32 bit, over the UTF-8 bytes (Go's hash/fnv New32a)."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(workflow: str, node_name: str) -> str:
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


def pod_name(workflow: str, node_name: str, template: str) -> str:
    """`<workflow>-<template>-<fnv32a(node name)>`, the prefix cut to fit a Kubernetes name."""
    if node_name == workflow:
        return workflow
    prefix = f"{workflow}-{template}"
    limit = MAX_NAME_LENGTH - HASH_LENGTH - 1
    return f"{prefix[:limit]}-{fnv32a(node_name)}"


def generated_name(prefix: str) -> str:
    """`metadata.generateName` + five random characters, as the Kubernetes API server does."""
    return prefix + "".join(secrets.choice(_K8S_RANDOM_ALPHABET) for _ in range(5))


def item_value(item: JsonValue) -> str:
    """`{{item}}`: scalars as text, maps and lists as compact JSON (Go's encoding)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return item
    if isinstance(item, int | float):
        return str(item)
    return json_text(item)


def item_fields(item: JsonValue) -> Mapping[str, str]:
    """`{{item.<key>}}` values of a map item."""
    if not isinstance(item, dict):
        return {}
    return {f"item.{key}": item_value(value) for key, value in item.items()}


def expanded_name(task: str, index: int, item: JsonValue) -> str:
    """`task(0:a)`; a map item is `task(0:k1:v1,k2:v2)` with sorted pairs, as in Argo."""
    if isinstance(item, dict):
        text = ",".join(sorted(f"{key}:{item_value(value)}" for key, value in item.items()))
    else:
        text = item_value(item)
    return f"{task}({index}:{text})"
