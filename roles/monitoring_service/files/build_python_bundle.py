"""Build, on the controller, the install bundle of one of the project's Python services.

    build_python_bundle.py OUTPUT PYTHON_VERSION ARCHITECTURE LOCK PROJECT [PROJECT ...]
                           [-- PIP_ARG ...]

Writes OUTPUT, a .tar.gz of wheels for CPython PYTHON_VERSION (e.g. 3.11) on
ARCHITECTURE (e.g. x86_64): every dependency pinned in LOCK, downloaded with
--require-hashes (only the exact files whose SHA-256 the lock lists are
taken), and a wheel built from each PROJECT directory (the service itself and
the project's shared packages, e.g. exporter_web), so that targets install it
with `pip install --no-index` and need no index of their own. The lock goes
into the bundle too (requirements.lock), so that the target checks the same
hashes, and so does local-wheels.txt, the names of the wheels built here,
which install_python_bundle.py installs without dependencies.
The archive is byte-for-byte reproducible (sorted, fixed times and owners):
the same inputs give the same checksum, so copying it again changes nothing.
Arguments after -- go to pip (e.g. --index-url of a mirror).
"""

import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def pip(*args):
    # Wheels built here carry this date in their zip entries, not today's.
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=False,
        env=env,
    )
    if result.returncode != 0:
        # pip said why above (a hash that does not match, an index that does
        # not answer): no traceback of ours after it.
        sys.exit(f"build_python_bundle.py: pip {args[0]} failed with exit code {result.returncode}")


def main():
    arguments, pip_args = sys.argv[1:], []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, pip_args = arguments[:split], arguments[split + 1 :]
    output, python_version, architecture, lock, *projects = arguments
    if not projects:
        sys.exit("build_python_bundle.py: name at least one PROJECT directory")
    platforms = [f"manylinux_2_{n}_{architecture}" for n in (28, 17)] + [
        f"manylinux2014_{architecture}"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        pip(
            "download",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python_version,
            *[f"--platform={p}" for p in platforms],
            # Every wheel must be one the lock pins by hash.
            "--require-hashes",
            "-r",
            lock,
            "-d",
            str(wheels),
            *pip_args,
        )
        downloaded = set(os.listdir(wheels))
        for project in projects:
            # From a clean copy: setuptools leaves build/ and *.egg-info in the
            # tree it builds, and would ship a stale build/lib next time.
            clean = Path(tmp) / "source" / Path(project).name
            shutil.copytree(
                project,
                clean,
                ignore=shutil.ignore_patterns(
                    "build", "*.egg-info", "__pycache__", "tests", "bench"
                ),
            )
            pip("wheel", "--no-deps", "-w", str(wheels), str(clean), *pip_args)
        local = sorted(set(os.listdir(wheels)) - downloaded)
        (wheels / "local-wheels.txt").write_text("".join(f"{name}\n" for name in local))
        shutil.copyfile(lock, wheels / "requirements.lock")

        # Built under a unique name and renamed: hosts building the same
        # bundle at once never see a half-written one.
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=Path(output).parent)
        partial = Path(name)
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for wheel in sorted(wheels.iterdir()):  # the wheels, the lock, the list
                info = tar.gettarinfo(wheel, arcname=wheel.name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                with wheel.open("rb") as handle:
                    tar.addfile(info, handle)
        partial.chmod(0o644)
        partial.replace(output)


if __name__ == "__main__":
    main()
