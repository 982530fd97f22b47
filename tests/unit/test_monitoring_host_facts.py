"""monitoring_host_facts: what an archive install left, read from manifests in one look."""

import json

import monitoring_host_facts
from conftest import run_module


def install(root, name, version, files, archive_sha256="ab" * 32):
    """An install as roles/monitoring_service writes it: files, then the manifest."""
    directory = root / name / version
    directory.mkdir(parents=True)
    records = {}
    for file_name, data in files.items():
        path = directory / file_name
        path.write_bytes(data)
        records[str(path)] = {"sha256": "0" * 64, "size": len(data)}
    (directory / ".install-manifest.json").write_text(
        json.dumps(
            {"name": name, "version": version, "archive_sha256": archive_sha256, "files": records}
        )
    )
    return directory


def archives(root):
    result = run_module(monitoring_host_facts, {"archive_root": str(root)}, check_mode=True)
    assert result["changed"] is False
    assert "ansible_facts" not in result
    return result["host"]["archives"]


def test_a_complete_install_is_reported_with_its_files_and_archive_checksum(tmp_path):
    directory = install(
        tmp_path, "prometheus", "2.53.3", {"prometheus": b"p" * 10, "promtool": b"t"}
    )

    assert archives(tmp_path) == {
        "prometheus": {
            "2.53.3": {
                "archive_sha256": "ab" * 32,
                "files": [str(directory / "prometheus"), str(directory / "promtool")],
                "complete": True,
            }
        }
    }


def test_a_missing_or_truncated_file_makes_the_install_incomplete(tmp_path):
    missing = install(tmp_path, "alertmanager", "0.28.1", {"alertmanager": b"a", "amtool": b"t"})
    truncated = install(tmp_path, "node_exporter", "1.9.0", {"node_exporter": b"n" * 10})
    (missing / "amtool").unlink()
    (truncated / "node_exporter").write_bytes(b"n")

    found = archives(tmp_path)

    assert found["alertmanager"]["0.28.1"]["complete"] is False
    assert found["node_exporter"]["1.9.0"]["complete"] is False


def test_a_directory_without_a_readable_manifest_is_listed_as_incomplete(tmp_path):
    (tmp_path / "redis_exporter" / "1.69.0").mkdir(parents=True)
    broken = install(tmp_path, "redis_exporter", "1.70.0", {"redis_exporter": b"r"})
    (broken / ".install-manifest.json").write_text("{not json")

    found = archives(tmp_path)

    assert found["redis_exporter"] == {
        "1.69.0": {"archive_sha256": "", "files": [], "complete": False},
        "1.70.0": {"archive_sha256": "", "files": [], "complete": False},
    }


def test_every_version_of_a_name_is_listed(tmp_path):
    install(tmp_path, "prometheus", "2.53.3", {"prometheus": b"p"})
    install(tmp_path, "prometheus", "2.53.4", {"prometheus": b"p"})

    assert sorted(archives(tmp_path)["prometheus"]) == ["2.53.3", "2.53.4"]


def test_no_archive_root_means_no_installs(tmp_path):
    assert archives(tmp_path / "absent") == {}


def test_nameservers_come_from_resolv_conf_in_order(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# generated\nsearch example.com\nnameserver 10.0.0.2\n"
        "nameserver  ::1 \noptions ndots:2\nnameserver\n"
    )
    assert monitoring_host_facts.nameservers(str(resolv)) == ["10.0.0.2", "::1"]


def test_no_resolv_conf_means_no_nameservers(tmp_path):
    assert monitoring_host_facts.nameservers(str(tmp_path / "missing")) == []
