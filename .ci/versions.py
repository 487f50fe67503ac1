"""Print the versions a CI run installed and tested: Python, each distribution vramtui
depends on (its own requirements, extras included: pyproject.toml holds ranges, and a
fresh install takes the newest release in each), then every installed distribution,
for the libraries under them."""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    print(f"versions tested: python {platform.python_version()} on {sys.platform}")
    try:
        wanted = metadata.requires("vramtui") or []
    except metadata.PackageNotFoundError:
        wanted = []
    names = dict.fromkeys(re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0] for req in wanted)
    for name in names:
        print(f"  {name} {installed(name)}")
    every = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    print("  all installed: " + ", ".join(every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
