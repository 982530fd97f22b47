"""monitoring_service's install_python_bundle.py, on this machine, with hand-made wheels.

It runs as the roles run it (Debian's /usr/bin/python3, which has venv), on
a bundle like build_python_bundle.py's: a stand-in dependency pinned by hash
in the lock, and a stand-in exporter wheel with the docker-exporter entry
point, listed in local-wheels.txt.
What it leaves is read back with monitoring_host_facts' own reader, the one
that tells a rerun whether a version is whole.
"""

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from monitoring_host_facts import archive_installs

SCRIPT = ROOT / "roles/monitoring_service/files/install_python_bundle.py"
PYTHON = "/usr/bin/python3"
PYTHON_VERSION = subprocess.run(
    [PYTHON, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
    capture_output=True,
    text=True,
    check=False,
).stdout.strip()


def wheel(name, version, files, entry_points=""):
    """The bytes of a minimal pure-Python wheel."""
    dist = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: dxtest\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    if entry_points:
        contents[f"{dist}/entry_points.txt"] = entry_points
    record = "".join(f"{path},,\n" for path in contents) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in {**contents, f"{dist}/RECORD": record}.items():
            archive.writestr(path, text)
    return buffer.getvalue()


DEPENDENCY = wheel("dxfake", "1.0", {"dxfake/__init__.py": "VALUE = 1\n"})
EXPORTER = wheel(
    "docker_exporter",
    "0.0.1",
    {
        "docker_exporter/__init__.py": "",
        "docker_exporter/cli.py": "import dxfake\n\ndef main():\n"
        "    print('docker-exporter 0.0.1')\n",
    },
    "[console_scripts]\ndocker-exporter = docker_exporter.cli:main\n",
)


def bundle(path, lock_hash=None):
    digest = lock_hash or hashlib.sha256(DEPENDENCY).hexdigest()
    files = {
        "dxfake-1.0-py3-none-any.whl": DEPENDENCY,
        "docker_exporter-0.0.1-py3-none-any.whl": EXPORTER,
        "requirements.lock": f"dxfake==1.0 \\\n    --hash=sha256:{digest}\n".encode(),
        "local-wheels.txt": b"docker_exporter-0.0.1-py3-none-any.whl\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def install(version_dir, python_version=PYTHON_VERSION):
    return subprocess.run(
        [PYTHON, str(SCRIPT), str(version_dir), python_version, "docker-exporter"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def root(tmp_path):
    if not Path(PYTHON).exists():
        pytest.fail(f"{PYTHON} is missing (Debian's python3 and python3-venv)")
    return tmp_path / "archives"


def new_version(root, name, **kwargs):
    version_dir = root / "docker-exporter" / name
    version_dir.mkdir(parents=True)
    bundle(version_dir / "bundle.tar.gz", **kwargs)
    return version_dir


def test_installs_and_writes_the_manifest_last(root):
    version_dir = new_version(root, "abc-py")

    result = install(version_dir)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "version_dir": str(version_dir),
        "service_version": "0.0.1",
    }
    run = subprocess.run(
        [str(version_dir / "venv/bin/docker-exporter")], capture_output=True, text=True, check=True
    )
    assert run.stdout == "docker-exporter 0.0.1\n"
    # Only the virtualenv and its manifest stay.
    assert sorted(p.name for p in version_dir.iterdir()) == [".install-manifest.json", "venv"]
    manifest = json.loads((version_dir / ".install-manifest.json").read_text())
    assert manifest["name"] == "docker-exporter" and manifest["version"] == "abc-py"
    assert str(version_dir / "venv/bin/docker-exporter") in manifest["files"]
    assert any(path.endswith("dxfake-1.0.dist-info/RECORD") for path in manifest["files"])
    # The host facts see it whole.
    (entry,) = archive_installs(str(root))["docker-exporter"].values()
    assert entry["complete"] is True


def test_a_wheel_that_is_not_the_locked_one_is_refused(root):
    version_dir = new_version(root, "bad-py", lock_hash="0" * 64)

    result = install(version_dir)

    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr, result.stderr
    assert not (version_dir / ".install-manifest.json").exists()
    assert archive_installs(str(root))["docker-exporter"]["bad-py"]["complete"] is False


def test_an_interrupted_install_is_built_again(root):
    version_dir = new_version(root, "abc-py")
    assert install(version_dir).returncode == 0
    # As a run that died halfway leaves it: no manifest, a broken venv.
    (version_dir / ".install-manifest.json").unlink()
    (version_dir / "venv/bin/docker-exporter").unlink()
    bundle(version_dir / "bundle.tar.gz")  # the role copies it again
    assert archive_installs(str(root))["docker-exporter"]["abc-py"]["complete"] is False

    result = install(version_dir)

    assert result.returncode == 0, result.stderr
    assert archive_installs(str(root))["docker-exporter"]["abc-py"]["complete"] is True


def test_refuses_a_bundle_for_another_python(root):
    version_dir = new_version(root, "abc-py")

    result = install(version_dir, python_version="2.7")

    assert result.returncode != 0
    assert "the bundle is for 2.7" in result.stderr
    assert not (version_dir / "venv").exists()


def test_refuses_a_bundle_with_paths(root):
    version_dir = root / "docker-exporter" / "evil-py"
    version_dir.mkdir(parents=True)
    with tarfile.open(version_dir / "bundle.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))

    result = install(version_dir)

    assert result.returncode != 0 and "unexpected entry" in result.stderr
    assert not (version_dir.parent / "escaped").exists()
