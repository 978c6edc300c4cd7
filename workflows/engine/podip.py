"""Each local pod's own IP: a loopback address of its run's block, as a cluster gives each
pod its own IP.

Linux routes all of 127.0.0.0/8 to the loopback interface, so any of its addresses can be
bound and reached without setup. One shared address would make pods meet where a cluster's
never do: a retried tracker would find its predecessor's port in TCP TIME_WAIT (XGBoost's
socket sets no SO_REUSEADDR), and two daemons could not listen on one port. So every attempt
of a pod gets the next address of its run's block, one no earlier pod of the run had (until
a run's 65,025th pod).

A run's block is 127.B.0.0/16 with B taken from its uid (1 to 254): deterministic per run,
and two runs of one machine rarely share a block. 127.0.x.x is left alone: 127.0.0.1 is
where SeaweedFS and other local services listen (127.0.0.53 is systemd-resolved's, 127.0.1.1
Debian's host name), and none of them should ever meet a pod's port.

Elsewhere (macOS configures 127.0.0.1 alone on its loopback) every pod shares 127.0.0.1, as
before: daemons then cannot share a port, and a retried tracker may find its port in
TIME_WAIT and fail that attempt.
"""

import ipaddress
import sys
import zlib

SHARED = "127.0.0.1"
SUBNETS = 256
HOSTS = 254
"""x.y.z.1 to x.y.z.254 of each /24 of the block: never an address a program could take
for a network or broadcast address."""


class PodAddresses:
    """Hands out a run's pod IPs, one per pod attempt, in order."""

    def __init__(self, run_uid: str) -> None:
        block = 1 + zlib.crc32(run_uid.encode()) % 254
        self._base = int(ipaddress.IPv4Address(f"127.{block}.0.0"))
        self._handed = 0

    def next(self) -> str:
        """A new address; after the block's 65,024 the first ones come round again."""
        if sys.platform != "linux":
            return SHARED
        subnet, host = divmod(self._handed % (SUBNETS * HOSTS), HOSTS)
        self._handed += 1
        return str(ipaddress.IPv4Address(self._base + subnet * 256 + host + 1))
