"""Names exactly as Argo forms them: node names, node IDs, pod names, fan-out items.

Keys in the artifact repository contain the pod name, so matching Argo's algorithm (pod
name version v2, `workflow/util/pod_name.go`) is what makes a local run's artifacts sit
where a cluster run of the same manifest would put them.
"""

import json
import secrets
from collections.abc import Mapping

from pydantic import JsonValue

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
    """`{{item}}` (Argo's Item.String()): a string as itself, anything else as Go's
    encoding/json writes it (compact, map keys sorted, `<>&` kept)."""
    if isinstance(item, str):
        return item
    return go_json(item)


def go_json(value: JsonValue) -> str:
    """Go's json.Marshal as Item.String() returns it: compact, keys sorted, UTF-8 kept."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def item_fields(item: JsonValue) -> Mapping[str, str]:
    """`{{item.<key>}}` values of a map item."""
    if not isinstance(item, dict):
        return {}
    return {f"item.{key}": item_value(value) for key, value in item.items()}


def expanded_name(task: str, index: int, item: JsonValue) -> str:
    """Argo's generateNodeName: `task(0:a)`; a map item is `task(0:k1:v1,k2:v2)` with sorted
    pairs; a list is formatted as Go's fmt formats a slice (`[1 2]`); then every parenthesis
    is dropped from the item's text, so `a(b)` gives `task(0:ab)`."""
    if isinstance(item, dict):
        text = ",".join(sorted(f"{key}:{item_value(value)}" for key, value in item.items()))
    elif isinstance(item, list):
        text = "[" + " ".join(item_value(value) for value in item) + "]"
    else:
        text = item_value(item)
    return f"{task}({index}:{text.replace('(', '').replace(')', '')})"
