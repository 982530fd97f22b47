#!/usr/bin/env python3
"""Install the Docker exporter's bundle into a virtualenv of its own, on the target.

    install_bundle.py VERSION_DIR PYTHON_VERSION

VERSION_DIR holds bundle.tar.gz (build_bundle.py's wheels and the hashed
requirements.lock), copied there by the role; the directory is new for each
version, beside the one the running exporter uses, which nothing here
touches. This builds VERSION_DIR/venv with the system Python (which must be
PYTHON_VERSION, the version the bundle's wheels were chosen for), installs
the pinned dependencies with --require-hashes and then the exporter's own
wheel with --no-deps, checks that the exporter runs, and writes
VERSION_DIR/.install-manifest.json LAST, by rename: the host facts
(monitoring_host_facts) take a version directory as complete only when its
manifest is there and every file it lists has the recorded size, so a
half-built virtualenv is never taken for an install. A directory left
without a manifest by an interrupted run is built again from scratch.

Prints one JSON line: the version directory and the exporter's version.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

MANIFEST = ".install-manifest.json"


def fail(message):
    sys.exit(f"install_bundle.py: {message}")


def run(*argv):
    # The target's own pip configuration (an index, a cache) has no say:
    # everything comes from the bundle.
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1")
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def unpack(bundle, wheels):
    """The bundle holds plain files only (wheels and the lock): anything else is refused."""
    wheels.mkdir()
    with tarfile.open(bundle) as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                fail(f"unexpected entry in {bundle}: {member.name!r}")
            with tar.extractfile(member) as source, (wheels / member.name).open("wb") as out:
                shutil.copyfileobj(source, out)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    version_dir, python_version = Path(sys.argv[1]), sys.argv[2]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != python_version:
        fail(f"{sys.executable} is Python {running}; the bundle is for {python_version}")
    os.umask(0o022)  # root-owned, readable by the exporter's user
    bundle = version_dir / "bundle.tar.gz"
    venv, wheels = version_dir / "venv", version_dir / "wheels"

    # A directory without a manifest is not an install (yet): start afresh.
    (version_dir / MANIFEST).unlink(missing_ok=True)
    for stale in (venv, wheels):
        shutil.rmtree(stale, ignore_errors=True)
    unpack(bundle, wheels)
    exporter_wheels = sorted(wheels.glob("docker_exporter-*.whl"))
    if len(exporter_wheels) != 1:
        fail(f"{bundle} must hold one docker_exporter wheel, not {len(exporter_wheels)}")

    run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    common = ["install", "--no-index", "--find-links", str(wheels)]
    run(*pip, *common, "--require-hashes", "-r", str(wheels / "requirements.lock"))
    run(*pip, *common, "--no-deps", str(exporter_wheels[0]))
    version = run(str(venv / "bin" / "docker-exporter"), "--version").split()[-1]

    # What tells the next run, without hashing anything, that the install is
    # whole: the entry point, the venv's config and each package's RECORD
    # (which pip writes last for a package).
    listed = [venv / "bin" / "docker-exporter", venv / "pyvenv.cfg"]
    listed += sorted(venv.glob("lib/python*/site-packages/*.dist-info/RECORD"))
    manifest = {
        "name": version_dir.parent.name,
        "version": version_dir.name,
        "url": "",
        "archive_sha256": sha256(bundle),
        "exporter_version": version,
        "files": {
            str(path): {"sha256": sha256(path), "size": path.stat().st_size} for path in listed
        },
    }
    shutil.rmtree(wheels)
    bundle.unlink()
    partial = version_dir / f"{MANIFEST}.partial"
    with partial.open("w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(version_dir / MANIFEST)
    print(json.dumps({"version_dir": str(version_dir), "exporter_version": version}))


if __name__ == "__main__":
    main()
