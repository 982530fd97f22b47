#!/usr/bin/python
"""Fetch a release archive once into a cache, verify its SHA-256, unpack the wanted files."""

DOCUMENTATION = r"""
---
module: release_archive
short_description: Fetch a release archive into a cache, verify its SHA-256, unpack files from it
description:
  - Meant to run on the controller (C(delegate_to=localhost)), so that the targets never download.
  - Downloads O(url) into O(cache_dir) unless a copy whose SHA-256 matches is already there,
    checks the SHA-256 against a pinned value or the release's checksums file, and unpacks the
    requested O(files) next to it. A cache hit downloads nothing but the checksums file (when
    the checksum is a URL).
  - A download whose SHA-256 differs is discarded and the module fails with the URL, the
    expected and the actual checksum. An unreachable URL, an archive without an entry for a
    requested file, or a checksums file without an entry for the archive also fail, naming
    what was asked for.
  - Upstream release archives hold one top directory (C(prometheus-2.53.3.linux-amd64/));
    O(files) are paths below it. An archive without a single top directory is read from its root.
  - Concurrent runs for the same archive (several hosts, forks) wait for each other through a
    lock file, so the archive is fetched once.
options:
  url:
    description:
      - URL of the archive (C(http), C(https), C(ftp) or C(file)).
      - A C(.tar.gz), C(.tar.xz) or C(.tar.bz2).
    type: str
    required: true
  checksum:
    description:
      - C(sha256:<64 hex digits>), the archive's pinned SHA-256.
      - Or the URL of a checksums file in C(sha256sum) format (C(sha256sums.txt) of a release),
        optionally written C(sha256:<URL>); the line for the archive's file name is used.
    type: str
    required: true
  cache_dir:
    description: Directory of the archives and what is unpacked from them; created when missing.
    type: path
    required: true
  files:
    description: Files to unpack, as paths below the archive's top directory, e.g. C(promtool).
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait for each network operation.
    type: int
    default: 60
  validate_certs:
    description: Verify the TLS certificates of C(https) URLs.
    type: bool
    default: true
notes:
  - Supports check mode, and does the same in it. The cache belongs to the controller, not to
    the target, and a run in check mode needs it to predict the copies.
author: Prometheus Alerting maintainers (@prometheus-alerting)
"""

EXAMPLES = r"""
- name: Fetch and verify Prometheus' release archive on the controller
  prometheus_alerting.stack.release_archive:
    url: https://github.com/prometheus/prometheus/releases/download/v2.53.3/prometheus-2.53.3.linux-amd64.tar.gz
    checksum: https://github.com/prometheus/prometheus/releases/download/v2.53.3/sha256sums.txt
    cache_dir: ~/.cache/prometheus-alerting/archives
    files: [prometheus, promtool]
  delegate_to: localhost
  check_mode: false
"""

RETURN = r"""
archive:
  description: Path of the verified archive in the cache.
  returned: success
  type: str
sha256:
  description: SHA-256 of the archive.
  returned: success
  type: str
downloaded:
  description: Whether the archive was downloaded in this run (false on a cache hit).
  returned: success
  type: bool
directory:
  description: Directory the requested files were unpacked into.
  returned: success
  type: str
files:
  description: Each requested file with its unpacked path, SHA-256 and size in bytes.
  returned: success
  type: dict
  sample:
    promtool:
      path: /root/.cache/prometheus-alerting/archives/prometheus-2.53.3.linux-amd64/promtool
      sha256: 4e1c...
      size: 119537056
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

CHUNK = 1024 * 1024
HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
URL_SCHEMES = ("http://", "https://", "ftp://", "file://")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar")
# Written into the unpack directory: which archive its files came from.
UNPACKED_RECORD = ".release-archive.json"


class ArchiveError(Exception):
    """A failure with a message meant for the operator."""


def archive_file_name(url):
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise ArchiveError(
            f"{url} does not name a tar archive ({', '.join(ARCHIVE_SUFFIXES)}): cannot tell "
            "its file name, which the cache and the checksums file go by."
        )
    return name


def open_source(url, timeout, validate_certs):
    """A readable stream for an http(s)/ftp or file:// URL; ArchiveError naming the URL."""
    try:
        if url.startswith("file://"):
            return open(urllib.parse.unquote(urllib.parse.urlsplit(url).path), "rb")
        return open_url(url, timeout=timeout, validate_certs=validate_certs, follow_redirects="all")
    except Exception as error:  # urllib, socket, TLS and OS errors alike
        raise ArchiveError(f"Cannot download {url}: {error}") from error


def expected_sha256(checksum, file_name, timeout, validate_certs):
    """(hex digest, where it came from) for a pinned value or a checksums file URL."""
    value = checksum.strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:") :].strip()
        if HEX_SHA256.match(value):
            return value.lower(), "pinned sha256"
    if not value.startswith(URL_SCHEMES):
        raise ArchiveError(
            f"checksum {checksum!r} is neither sha256:<64 hex digits> nor the URL (http, https, "
            "ftp, file) of a checksums file"
        )
    with open_source(value, timeout, validate_certs) as stream:
        try:
            text = stream.read(4 * CHUNK).decode("utf-8", "replace")
        except Exception as error:
            raise ArchiveError(f"Cannot download {value}: {error}") from error
    for line in text.splitlines():
        fields = line.split()
        # GNU coreutils: "<hex>  <name>" or "<hex> *<name>"; names may carry a path.
        if (
            len(fields) == 2
            and HEX_SHA256.match(fields[0])
            and os.path.basename(fields[1].lstrip("*")) == file_name
        ):
            return fields[0].lower(), value
    raise ArchiveError(f"The checksums file {value} has no SHA-256 for {file_name}")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on `path` (created when missing)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(url, dest, expected, source, timeout, validate_certs):
    """Stream `url` to a temporary file beside `dest`; rename it there if its SHA-256 matches."""
    digest = hashlib.sha256()
    fd, partial = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as out, open_source(url, timeout, validate_certs) as stream:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except Exception as error:
                    raise ArchiveError(f"Cannot download {url}: {error}") from error
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ArchiveError(
                f"SHA-256 mismatch for {url}: expected {expected} ({source}), actual {actual}. "
                "The download was discarded; nothing was unpacked or installed."
            )
        os.chmod(partial, 0o644)
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def member_name(member):
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name


def top_directory(names):
    """The single directory every member lies under, or '' when there is none."""
    firsts = {name.split("/", 1)[0] for name in names}
    if len(firsts) == 1 and any("/" in name for name in names):
        return firsts.pop() + "/"
    return ""


def safe_relative(path):
    normal = os.path.normpath(path)
    if os.path.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise ArchiveError(f"{path!r} is not a path inside the archive")
    return normal


def unpack(archive, url, sha256, wanted, directory):
    """Unpack `wanted` (paths below the top directory) into `directory`; return their records."""
    record_path = os.path.join(directory, UNPACKED_RECORD)
    with contextlib.suppress(OSError, ValueError):
        with open(record_path) as handle:
            record = json.load(handle)
        if record.get("sha256") == sha256 and all(
            name in record["files"]
            and os.path.getsize(record["files"][name]["path"]) == record["files"][name]["size"]
            for name in wanted
        ):
            return {name: record["files"][name] for name in wanted}, False

    parent = os.path.dirname(directory)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        files = {}
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = {member_name(member): member for member in tar.getmembers()}
                prefix = top_directory(list(members))
                for name in wanted:
                    member = members.get(prefix + name)
                    if member is None or not member.isfile():
                        regular = sorted(n[len(prefix) :] for n, m in members.items() if m.isfile())
                        raise ArchiveError(
                            f"{url} has no file {name} below {prefix or 'its root'}; "
                            f"it holds: {', '.join(regular)}"
                        )
                    target = os.path.join(staging, name)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with tar.extractfile(member) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
                    files[name] = {
                        "path": os.path.join(directory, name),
                        "sha256": file_sha256(target),
                        "size": os.path.getsize(target),
                    }
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ArchiveError(f"Cannot unpack {archive} (from {url}): {error}") from error
        with open(os.path.join(staging, UNPACKED_RECORD), "w") as handle:
            json.dump({"url": url, "sha256": sha256, "files": files}, handle, indent=1)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files, True


def fetch(url, checksum, cache_dir, wanted, timeout=60, validate_certs=True):
    """Everything the module does; returns its result dict or raises ArchiveError."""
    wanted = [safe_relative(name) for name in wanted]
    file_name = archive_file_name(url)
    expected, source = expected_sha256(checksum, file_name, timeout, validate_certs)
    os.makedirs(cache_dir, exist_ok=True)
    archive = os.path.join(cache_dir, file_name)
    stem = file_name
    for suffix in ARCHIVE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    directory = os.path.join(cache_dir, stem)

    with locked(os.path.join(cache_dir, f".{file_name}.lock")):
        downloaded = False
        if not (os.path.isfile(archive) and file_sha256(archive) == expected):
            download(url, archive, expected, source, timeout, validate_certs)
            downloaded = True
        files, unpacked = unpack(archive, url, expected, wanted, directory)
    return {
        "changed": downloaded or unpacked,
        "archive": archive,
        "sha256": expected,
        "downloaded": downloaded,
        "directory": directory,
        "files": files,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "checksum": {"type": "str", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "str", "required": True},
            "timeout": {"type": "int", "default": 60},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = fetch(
            params["url"],
            params["checksum"],
            params["cache_dir"],
            params["files"],
            params["timeout"],
            params["validate_certs"],
        )
    except ArchiveError as error:
        module.fail_json(msg=str(error), url=params["url"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
