"""Memory from cgroupfs, on fake /proc and cgroup trees."""

from __future__ import annotations

from pathlib import Path

from docker_exporter.cgroup import CgroupMemoryReader, parse_mountinfo, parse_proc_cgroup

CID = "c186cee7d235" + "e5d3e668c7237b54363871291175a0e6094e0d69df356a26a68b"
OTHER = "46fbadc27069" + "012347f9ae9d6e901535cdec0ed51d7c8e507c657181825c0f46"


def fake_host(tmp_path: Path, mountinfo: str, pid: int, proc_cgroup: str) -> CgroupMemoryReader:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(mountinfo)
    (tmp_path / "proc" / str(pid)).mkdir()
    (tmp_path / "proc" / str(pid) / "cgroup").write_text(proc_cgroup)
    return CgroupMemoryReader(proc=str(tmp_path / "proc"))


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def test_parse_mountinfo() -> None:
    text = (
        "31 23 0:28 / /sys/fs/cgroup ro,relatime - tmpfs tmpfs ro,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "35 31 0:32 /docker /sys/fs/cgroup/mem\\040ory rw,relatime shared:9 - "
        "cgroup cgroup rw,memory\n"
        "40 31 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    v1, v2 = parse_mountinfo(text)
    assert v1 is not None and v2 is not None
    assert (v1.root, v1.point) == ("/docker", "/sys/fs/cgroup/mem ory")
    assert (v2.root, v2.point) == ("/", "/sys/fs/cgroup/unified")
    assert parse_mountinfo("") == (None, None)


def test_parse_proc_cgroup() -> None:
    v1_and_v2 = f"5:devices:/docker/{CID}\n4:memory:/docker/{CID}\n0::/docker/{CID}\n"
    assert parse_proc_cgroup(v1_and_v2) == (f"/docker/{CID}", f"/docker/{CID}")
    v2_only = f"0::/system.slice/docker-{CID}.scope\n"
    assert parse_proc_cgroup(v2_only) == (None, f"/system.slice/docker-{CID}.scope")


def test_cgroup_v1(tmp_path: Path) -> None:
    mount = tmp_path / "cgroup" / "memory"
    reader = fake_host(
        tmp_path,
        f"35 31 0:32 / {mount} rw,relatime - cgroup cgroup rw,memory\n",
        4242,
        f"4:memory:/docker/{CID}\n1:cpu:/docker/{CID}\n",
    )
    write_files(
        mount / "docker" / CID,
        {
            "memory.usage_in_bytes": "10485760\n",
            "memory.stat": "cache 4000000\ninactive_file 1000000\ntotal_inactive_file 3000000\n",
        },
    )
    assert reader.available
    assert reader.memory_usage(4242, CID) == 10485760 - 3000000


def test_cgroup_v2_systemd_driver(tmp_path: Path) -> None:
    mount = tmp_path / "cgroup2"
    scope = f"/system.slice/docker-{CID}.scope"
    reader = fake_host(
        tmp_path,
        f"30 23 0:27 / {mount} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        77,
        f"0::{scope}\n",
    )
    write_files(
        mount / scope.lstrip("/"),
        {"memory.current": "8000000\n", "memory.stat": "anon 5000000\ninactive_file 2500000\n"},
    )
    assert reader.memory_usage(77, CID) == 8000000 - 2500000


def test_cgroup_mount_of_a_subtree(tmp_path: Path) -> None:
    mount = tmp_path / "mem"
    reader = fake_host(
        tmp_path,
        f"35 31 0:32 /docker {mount} rw - cgroup cgroup rw,memory\n",
        9,
        f"4:memory:/docker/{CID}\n",
    )
    write_files(mount / CID, {"memory.usage_in_bytes": "4096\n", "memory.stat": ""})
    assert reader.memory_usage(9, CID) == 4096


def test_cgroup_of_another_container_is_refused(tmp_path: Path) -> None:
    # A recycled PID, or a PID read in the wrong namespace: never borrow numbers.
    mount = tmp_path / "cgroup" / "memory"
    reader = fake_host(
        tmp_path,
        f"35 31 0:32 / {mount} rw - cgroup cgroup rw,memory\n",
        4242,
        f"4:memory:/docker/{OTHER}\n",
    )
    write_files(mount / "docker" / OTHER, {"memory.usage_in_bytes": "4096\n", "memory.stat": ""})
    assert reader.memory_usage(4242, CID) is None


def test_cgroup_unreadable_cases(tmp_path: Path) -> None:
    mount = tmp_path / "cgroup" / "memory"
    reader = fake_host(
        tmp_path,
        f"35 31 0:32 / {mount} rw - cgroup cgroup rw,memory\n",
        4242,
        f"4:memory:/docker/{CID}\n",
    )
    assert reader.memory_usage(4242, CID) is None  # no cgroup directory
    assert reader.memory_usage(999, CID) is None  # no such process
    assert reader.memory_usage(0, CID) is None  # not running
    write_files(mount / "docker" / CID, {"memory.usage_in_bytes": "junk\n", "memory.stat": ""})
    assert reader.memory_usage(4242, CID) is None


def test_no_cgroup_hierarchy(tmp_path: Path) -> None:
    reader = fake_host(tmp_path, "", 1, "")
    assert not reader.available
    assert reader.memory_usage(1, CID) is None
