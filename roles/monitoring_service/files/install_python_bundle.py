"""Install one of the project's Python services from its bundle, into a virtualenv of its own.

    install_python_bundle.py VERSION_DIR PYTHON_VERSION COMMAND

Runs on the target. VERSION_DIR holds bundle.tar.gz (build_python_bundle.py's
wheels, the hashed requirements.lock and local-wheels.txt), copied there by
the role; the directory is new for each version, beside the one the running
service uses, which nothing here touches. This builds VERSION_DIR/venv with
the system Python (which must be PYTHON_VERSION, the version the bundle's
wheels were chosen for), installs the pinned dependencies with
--require-hashes and then the project's own wheels (local-wheels.txt) with
--no-deps, checks that `COMMAND --version` runs, and writes
VERSION_DIR/.install-manifest.json LAST, by rename: the host facts
(monitoring_host_facts) take a version directory as complete only when its
manifest is there and every file it lists has the recorded size, so a
half-built virtualenv is never taken for an install. A directory left
without a manifest by an interrupted run is built again from scratch.

Prints one JSON line: the version directory and the service's version.
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
    sys.exit(f"install_python_bundle.py: {message}")


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
    version_dir, python_version, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != python_version:
        fail(f"{sys.executable} is Python {running}; the bundle is for {python_version}")
    os.umask(0o022)  # root-owned, readable by the service's user
    bundle = version_dir / "bundle.tar.gz"
    venv, wheels = version_dir / "venv", version_dir / "wheels"

    # A directory without a manifest is not an install (yet): start afresh.
    (version_dir / MANIFEST).unlink(missing_ok=True)
    for stale in (venv, wheels):
        shutil.rmtree(stale, ignore_errors=True)
    unpack(bundle, wheels)
    try:
        local = (wheels / "local-wheels.txt").read_text().split()
    except FileNotFoundError:
        fail(f"{bundle} has no local-wheels.txt: build it with build_python_bundle.py")
    if not local or not all((wheels / name).is_file() for name in local):
        fail(f"{bundle} lists wheels it does not hold: {', '.join(local) or 'none'}")

    run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    common = ["install", "--no-index", "--find-links", str(wheels)]
    run(*pip, *common, "--require-hashes", "-r", str(wheels / "requirements.lock"))
    run(*pip, *common, "--no-deps", *[str(wheels / name) for name in local])
    version = run(str(venv / "bin" / command), "--version").split()[-1]

    # What tells the next run, without hashing anything, that the install is
    # whole: the entry point, the venv's config and each package's RECORD
    # (which pip writes last for a package).
    listed = [venv / "bin" / command, venv / "pyvenv.cfg"]
    listed += sorted(venv.glob("lib/python*/site-packages/*.dist-info/RECORD"))
    manifest = {
        "name": version_dir.parent.name,
        "version": version_dir.name,
        "url": "",
        "archive_sha256": sha256(bundle),
        "service_version": version,
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
    print(json.dumps({"version_dir": str(version_dir), "service_version": version}))


if __name__ == "__main__":
    main()
