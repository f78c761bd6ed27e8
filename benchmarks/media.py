"""The files served: made once, kept between runs (the 1 GiB one takes a while)."""

from __future__ import annotations

import os
import random

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024

FILES = {
    "small-4k.bin": 4 * KIB,
    "medium-1m.bin": MIB,
    "large-100m.bin": 100 * MIB,
    "huge-1g.bin": GIB,
}


def make_media(folder: str, names: list[str]) -> dict[str, str]:
    """Write the named files (random, incompressible bytes) unless already there."""
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o755)  # nginx's workers may run as another user
    block = random.Random(5).randbytes(MIB)
    paths = {}
    for name in names:
        size = FILES[name]
        path = os.path.join(folder, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path + ".part", "wb") as out:
                left = size
                while left:
                    out.write(block[: min(left, MIB)])
                    left -= min(left, MIB)
            os.replace(path + ".part", path)
            os.chmod(path, 0o644)
        paths[name] = path
    return paths
