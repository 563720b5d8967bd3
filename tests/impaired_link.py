"""A point-to-point link between two network namespaces with delay and packet loss.

What ``tc netem`` does, in user space, for kernels without netem: one TUN device
in each namespace and this process between them, which holds every IP packet for
``--delay`` seconds and drops a ``--loss`` fraction, each direction on its own.

Run it inside the first namespace (``ip netns exec A python -m tests.impaired_link
--peer-netns B ...``); it opens the first TUN there, moves into B for the second,
prints ``ready`` and forwards until SIGTERM, then prints its counts as JSON.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000


def open_tun(name: str) -> int:
    """A TUN device ``name`` in the calling process's network namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(
        fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
    )
    return fd


def enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


def forward(
    fds: tuple[int, int], delay: float, loss: float, seed: int
) -> dict[str, int]:
    """Move packets between the two TUN devices until SIGTERM; return the counts."""
    rng = random.Random(seed)
    queues: tuple[collections.deque[tuple[float, bytes]], ...] = (
        collections.deque(),
        collections.deque(),
    )
    counts = {"forwarded": 0, "dropped": 0}
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        now = time.monotonic()
        for side, queue in enumerate(queues):  # queue[side]: packets read on side
            while queue and queue[0][0] <= now:
                os.write(fds[1 - side], queue.popleft()[1])
                counts["forwarded"] += 1
        due = min((q[0][0] for q in queues if q), default=now + 0.05)
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, due - now))
        except InterruptedError:
            continue
        for fd in readable:
            packet = os.read(fd, 65535)
            if rng.random() < loss:
                counts["dropped"] += 1
            else:
                queues[fds.index(fd)].append((time.monotonic() + delay, packet))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tun", required=True, help="TUN name here")
    parser.add_argument("--peer-netns", required=True)
    parser.add_argument("--peer-tun", required=True, help="TUN name in the peer")
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    here = open_tun(args.tun)
    enter_netns(args.peer_netns)
    there = open_tun(args.peer_tun)
    print("ready", flush=True)
    counts = forward((here, there), args.delay, args.loss, args.seed)
    print(json.dumps(counts), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
