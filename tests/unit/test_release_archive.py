"""release_archive: download once, verify the SHA-256, unpack only what is asked."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest
import release_archive
from conftest import ModuleFailed, run_module

PINNED = "sha256:" + "a" * 64
BINARIES = {"prometheus": b"\x7fELF prometheus", "promtool": b"\x7fELF promtool"}


def make_archive(path, top, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Mirror:
    """A release directory served on 127.0.0.1, counting requests per path."""

    def __init__(self, directory):
        self.requests = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                mirror.requests.append(self.path)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def release(tmp_path):
    """v2.53.3/ with an upstream-layout archive and its sha256sums.txt, served over HTTP."""
    directory = tmp_path / "mirror" / "v2.53.3"
    directory.mkdir(parents=True)
    archive = directory / "prometheus-2.53.3.linux-amd64.tar.gz"
    digest = make_archive(archive, "prometheus-2.53.3.linux-amd64", BINARIES)
    (directory / "sha256sums.txt").write_text(
        f"{'0' * 64}  prometheus-2.53.3.darwin-amd64.tar.gz\n{digest}  {archive.name}\n"
    )
    mirror = Mirror(tmp_path / "mirror")
    yield {
        "url": f"{mirror.url}/v2.53.3/{archive.name}",
        "sums": f"{mirror.url}/v2.53.3/sha256sums.txt",
        "sha256": digest,
        "path": archive,
        "mirror": mirror,
        "cache": tmp_path / "cache",
    }
    mirror.stop()


def module_args(release, **overrides):
    return {
        "url": release["url"],
        "checksum": release["sums"],
        "cache_dir": str(release["cache"]),
        "files": ["prometheus", "promtool"],
        **overrides,
    }


def test_downloads_verifies_and_unpacks_once_then_only_reads_the_checksums(release):
    first = run_module(release_archive, module_args(release))
    second = run_module(release_archive, module_args(release))

    assert first["changed"] is True
    assert first["downloaded"] is True
    assert first["sha256"] == release["sha256"]
    for name, data in BINARIES.items():
        unpacked = first["files"][name]
        assert Path(unpacked["path"]).read_bytes() == data
        assert unpacked["sha256"] == hashlib.sha256(data).hexdigest()
        assert unpacked["size"] == len(data)
    assert second["changed"] is False
    assert second["downloaded"] is False
    assert second["files"] == first["files"]
    archive_requests = [path for path in release["mirror"].requests if path.endswith(".tar.gz")]
    assert archive_requests == ["/v2.53.3/prometheus-2.53.3.linux-amd64.tar.gz"]


def test_a_pinned_checksum_needs_no_checksums_file(release):
    result = run_module(
        release_archive, module_args(release, checksum=f"sha256:{release['sha256'].upper()}")
    )

    assert result["sha256"] == release["sha256"]
    assert not [path for path in release["mirror"].requests if path.endswith("sha256sums.txt")]


def test_a_file_url_works_for_air_gapped_sites(release):
    directory = release["path"].parent
    result = run_module(
        release_archive,
        module_args(
            release,
            url=f"file://{release['path']}",
            checksum=f"file://{directory / 'sha256sums.txt'}",
        ),
    )

    assert result["downloaded"] is True
    assert release["mirror"].requests == []


def test_a_tampered_archive_fails_naming_url_expected_and_actual_and_is_not_cached(release):
    make_archive(release["path"], "prometheus-2.53.3.linux-amd64", {"prometheus": b"evil"})
    actual = hashlib.sha256(release["path"].read_bytes()).hexdigest()

    with pytest.raises(ModuleFailed) as failure:
        run_module(release_archive, module_args(release))

    message = failure.value.result["msg"]
    assert f"SHA-256 mismatch for {release['url']}" in message
    assert f"expected {release['sha256']} ({release['sums']})" in message
    assert f"actual {actual}" in message
    assert sorted(p.name for p in release["cache"].iterdir()) == [
        ".prometheus-2.53.3.linux-amd64.tar.gz.lock"
    ]


def test_a_cached_archive_that_no_longer_matches_is_downloaded_again(release):
    first = run_module(release_archive, module_args(release))
    with open(first["archive"], "ab") as handle:
        handle.write(b"corrupted")

    again = run_module(release_archive, module_args(release))

    assert again["downloaded"] is True
    assert hashlib.sha256(Path(again["archive"]).read_bytes()).hexdigest() == release["sha256"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"url": "{mirror}/v9.9.9/prometheus-9.9.9.linux-amd64.tar.gz", "checksum": PINNED},
         "Cannot download {mirror}/v9.9.9/prometheus-9.9.9.linux-amd64.tar.gz: HTTP Error 404"),
        ({"checksum": "{mirror}/v9.9.9/sha256sums.txt"},
         "Cannot download {mirror}/v9.9.9/sha256sums.txt: HTTP Error 404"),
        ({"url": "{mirror}/v2.53.3/prometheus-2.53.3.linux-arm64.tar.gz"},
         "The checksums file {mirror}/v2.53.3/sha256sums.txt has no SHA-256 for "
         "prometheus-2.53.3.linux-arm64.tar.gz"),
        ({"files": ["prometheus", "amtool"]},
         "{mirror}/v2.53.3/prometheus-2.53.3.linux-amd64.tar.gz has no file amtool below "
         "prometheus-2.53.3.linux-amd64/; it holds: prometheus, promtool"),
        ({"checksum": "md5:abc"}, "checksum 'md5:abc' is neither sha256:<64 hex digits>"),
        ({"url": "{mirror}/v2.53.3/prometheus"}, "does not name a tar archive"),
    ],
    ids=["unreachable-archive", "unreachable-checksums", "missing-architecture", "missing-file",
         "bad-checksum-format", "not-an-archive"],
)  # fmt: skip
def test_failures_name_what_was_asked_for(release, overrides, expected):
    mirror = release["mirror"].url
    args = module_args(release, **{k: v.format(mirror=mirror) if isinstance(v, str) else v
                                   for k, v in overrides.items()})  # fmt: skip

    with pytest.raises(ModuleFailed) as failure:
        run_module(release_archive, args)

    assert expected.format(mirror=mirror) in failure.value.result["msg"]


def test_an_archive_without_a_top_directory_is_read_from_its_root(release, tmp_path):
    flat = tmp_path / "redis_exporter-v1.69.0.linux-amd64.tar.gz"
    digest = make_archive(flat, "", {"redis_exporter": b"\x7fELF redis"})

    result = run_module(
        release_archive,
        module_args(
            release, url=f"file://{flat}", checksum=f"sha256:{digest}", files=["redis_exporter"]
        ),
    )

    assert Path(result["files"]["redis_exporter"]["path"]).read_bytes() == b"\x7fELF redis"


def test_a_path_out_of_the_archive_is_refused(release):
    with pytest.raises(ModuleFailed) as failure:
        run_module(release_archive, module_args(release, files=["../../etc/passwd"]))

    assert "is not a path inside the archive" in failure.value.result["msg"]
