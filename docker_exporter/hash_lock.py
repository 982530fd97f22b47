"""Write the SHA-256 of every wheel the role's bundle may download into requirements.lock.

    python docker_exporter/hash_lock.py [--python 3.11 --python 3.13] [--arch x86_64]
                                        [--index-url URL] [--lock PATH]

Reads the pins (``name==version``) of requirements.lock next to this file,
or of --lock (the alert relay's alert_relay/requirements.lock is written the
same way), asks the package index (PEP 691 JSON, PyPI by default) for each pinned
release's files, and rewrites the lock with one ``--hash=sha256:...`` per
wheel that roles/docker_exporter/files/build_bundle.py may download for one
of the given CPython versions and CPU: the release's pure-Python wheels and
its CPython, abi3 and manylinux wheels up to manylinux_2_28, the newest
platform tag the bundle asks for (pip may pick any of them, and pip
versions differ in which). build_bundle.py and the targets install with
``--require-hashes``, so a wheel whose hash is not listed is refused: run
this again after changing a pin, or to build for another Python or CPU.
The defaults are the targets the project supports (Debian 12: CPython 3.11,
Debian 13: 3.13, x86_64).
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.request
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

LOCK = Path(__file__).resolve().parent / "requirements.lock"
# build_bundle.py asks pip for manylinux_2_28, manylinux_2_17 and
# manylinux2014 wheels; pip reads older manylinux tags as compatible too.
MAX_GLIBC_MINOR = 28
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def platforms(arch: str) -> list[str]:
    return [f"manylinux_2_{minor}_{arch}" for minor in range(MAX_GLIBC_MINOR, 4, -1)] + [
        f"manylinux2014_{arch}",
        f"manylinux2010_{arch}",
        f"manylinux1_{arch}",
    ]


def supported_tags(pythons: list[str], arch: str) -> set[Tag]:
    tags: set[Tag] = set()
    for text in pythons:
        version = tuple(int(part) for part in text.split("."))
        plats = platforms(arch)
        tags.update(cpython_tags(version, platforms=plats))
        tags.update(compatible_tags(version, f"cp{version[0]}{version[1]}", plats))
    return tags


def release_files(index_url: str, name: str) -> list[dict]:
    request = urllib.request.Request(
        f"{index_url.rstrip('/')}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["files"]


def wheel_hashes(files: list[dict], version: str, tags: set[Tag]) -> list[str]:
    hashes = set()
    for entry in files:
        filename = entry["filename"]
        if not filename.endswith(".whl"):
            continue
        _name, wheel_version, _build, wheel_tags = parse_wheel_filename(filename)
        if str(wheel_version) == version and wheel_tags & tags:
            hashes.add(entry["hashes"]["sha256"])
    return sorted(hashes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--python", action="append", help="CPython version (repeatable)")
    parser.add_argument("--arch", default="x86_64", help="CPU, as uname -m names it")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock to rewrite")
    args = parser.parse_args()
    tags = supported_tags(args.python or ["3.11", "3.13"], args.arch)

    header, pins = [], []
    for line in args.lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins.append((match.group(1), match.group(2)))
        elif not pins and not line.lstrip().startswith("--hash"):
            header.append(line)
    out = list(header)
    for name, version in pins:
        hashes = wheel_hashes(release_files(args.index_url, name), version, tags)
        if not hashes:
            raise SystemExit(f"{name}=={version}: no wheel for these Pythons and CPU")
        out.append(f"{name}=={version} \\")
        out.extend(
            f"    --hash=sha256:{digest}" + (" \\" if n < len(hashes) - 1 else "")
            for n, digest in enumerate(hashes)
        )
    args.lock.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
