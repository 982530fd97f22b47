"""Memory, CPU, OOM kills and network from the host's files, on fake /proc and cgroup trees.

The file contents are those the kernel writes, copied from real hosts: cgroup
v1 from this project's development machine (Docker 20.10, cgroupfs driver,
separate cpu and cpuacct hierarchies), cgroup v2 as Debian 13 (Linux 6.12,
Docker's systemd driver) writes it. The same reader runs on the real files of
real containers in test_exporter_engine.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_exporter.cgroup import (
    CgroupReader,
    CpuFigures,
    InterfaceCounters,
    parse_cpu_max,
    parse_mountinfo,
    parse_net_dev,
    parse_proc_cgroup,
)

CID = "c186cee7d235" + "e5d3e668c7237b54363871291175a0e6094e0d69df356a26a68b"
OTHER = "46fbadc27069" + "012347f9ae9d6e901535cdec0ed51d7c8e507c657181825c0f46"

# /proc/self/mountinfo of the development machine (hybrid: v1 controllers, an
# empty v2 hierarchy at /sys/fs/cgroup/unified); {root} is the fake tree.
MOUNTINFO_V1 = """\
31 23 0:28 / {root}/sys/fs/cgroup rw,relatime - tmpfs tmpfs ro,size=4096k,nr_inodes=1024,mode=755
32 31 0:29 / {root}/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / {root}/sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / {root}/sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / {root}/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / {root}/sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / {root}/sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PROC_CGROUP_V1 = f"""\
12:hugetlb:/
11:net_cls,net_prio:/
9:name=systemd:/docker/{CID}
4:memory:/docker/{CID}
3:cpuset:/docker/{CID}
2:cpuacct:/docker/{CID}
1:cpu:/docker/{CID}
0::/docker/{CID}
"""
MEMORY_STAT_V1 = """\
cache 0
rss 114688
rss_huge 0
shmem 0
mapped_file 0
inactive_anon 110592
active_anon 4096
inactive_file 8192
active_file 0
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 134217728
total_cache 0
total_rss 114688
total_inactive_anon 110592
total_active_anon 4096
total_inactive_file 12288
total_active_file 0
total_unevictable 0
"""
OOM_CONTROL_V1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
CPU_STAT_V1 = (
    "nr_periods 169\nnr_throttled 167\nthrottled_time 12692736608\nnr_bursts 0\nburst_time 0\n"
)

# Debian 13: one cgroup2 hierarchy at /sys/fs/cgroup, systemd scopes.
MOUNTINFO_V2 = (
    "35 24 0:30 / {root}/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - "
    "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)
SCOPE = f"/system.slice/docker-{CID}.scope"
MEMORY_STAT_V2 = """\
anon 5000000
file 3000000
kernel 401408
kernel_stack 32768
pagetables 86016
sec_pagetables 0
percpu 720
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 4988928
active_anon 11072
inactive_file 2500000
active_file 500000
unevictable 0
slab_reclaimable 139240
slab_unreclaimable 118568
slab 257808
workingset_refault_anon 0
workingset_refault_file 0
pgscan 0
pgsteal 0
pgfault 1402
pgmajfault 0
thp_fault_alloc 0
"""
MEMORY_EVENTS_V2 = "low 0\nhigh 0\nmax 41\noom 3\noom_kill 3\noom_group_kill 0\n"
CPU_STAT_V2 = """\
usage_usec 3372895
user_usec 3342581
system_usec 30314
nice_usec 0
core_sched.force_idle_usec 0
nr_periods 1200
nr_throttled 300
throttled_usec 45000000
nr_bursts 0
burst_usec 0
"""

# /proc/<pid>/net/dev of a container on two networks, the second one busy
# enough that its byte counts run into the colon.
NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      12    0    0    0     0          0         0     1234      12    0    0    0     0       0          0
  eth0:   11028      19    1    5    0     0          0         0     3582       7    2    3    0     0       0          0
  eth1:123456789012 900000   7    8    0     0          0         0 98765432109  800000    9   10    0     0       0          0
"""  # noqa: E501 (the kernel's own line lengths)


def fake_host(tmp_path: Path, mountinfo: str, pid: int, proc_cgroup: str) -> CgroupReader:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo.format(root=tmp_path))
    (proc / str(pid) / "net").mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(proc_cgroup)
    return CgroupReader(proc=str(proc))


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def v1_host(tmp_path: Path, pid: int = 4242) -> CgroupReader:
    """The development machine's layout: cgroupfs driver, /docker/<id> in each hierarchy."""
    reader = fake_host(tmp_path, MOUNTINFO_V1, pid, PROC_CGROUP_V1)
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    write_files(
        cgroup / "memory" / "docker" / CID,
        {
            "memory.usage_in_bytes": "409600\n",
            "memory.stat": MEMORY_STAT_V1,
            "memory.oom_control": OOM_CONTROL_V1,
        },
    )
    write_files(
        cgroup / "cpu" / "docker" / CID,
        {
            "cpu.stat": CPU_STAT_V1,
            "cpu.cfs_quota_us": "20000\n",
            "cpu.cfs_period_us": "100000\n",
        },
    )
    write_files(cgroup / "cpuacct" / "docker" / CID, {"cpuacct.usage": "3372895361\n"})
    # The empty v2 hierarchy of hybrid mode: usage only, never preferred.
    write_files(
        cgroup / "unified" / "docker" / CID,
        {"cpu.stat": "usage_usec 1\nuser_usec 1\nsystem_usec 0\nnice_usec 0\n"},
    )
    write_files(tmp_path / "proc" / str(pid) / "net", {"dev": NET_DEV})
    return reader


def v2_host(tmp_path: Path, pid: int = 77, cpu_max: str | None = "25000 100000\n") -> CgroupReader:
    reader = fake_host(tmp_path, MOUNTINFO_V2, pid, f"0::{SCOPE}\n")
    files = {
        "memory.current": "8000000\n",
        "memory.stat": MEMORY_STAT_V2,
        "memory.events": MEMORY_EVENTS_V2,
        "cpu.stat": CPU_STAT_V2,
    }
    if cpu_max is not None:
        files["cpu.max"] = cpu_max
    write_files(tmp_path / "sys" / "fs" / "cgroup" / SCOPE.lstrip("/"), files)
    write_files(tmp_path / "proc" / str(pid) / "net", {"dev": NET_DEV})
    return reader


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO_V1.format(root=""))
    assert {c: (m.root, m.point) for c, m in mounts.v1.items()} == {
        "cpu": ("/", "/sys/fs/cgroup/cpu"),
        "cpuacct": ("/", "/sys/fs/cgroup/cpuacct"),
        "memory": ("/", "/sys/fs/cgroup/memory"),
    }
    assert mounts.v2 is not None
    assert (mounts.v2.root, mounts.v2.point) == ("/", "/sys/fs/cgroup/unified")
    # Debian 11's systemd mounts cpu and cpuacct together; octal escapes in paths.
    comounted = parse_mountinfo(
        "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw shared:8 - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 /docker /sys/fs/cgroup/mem\\040ory rw,relatime shared:9 - "
        "cgroup cgroup rw,memory\n"
    )
    assert comounted.v1["cpu"] is comounted.v1["cpuacct"]
    assert comounted.v1["cpu"].point == "/sys/fs/cgroup/cpu,cpuacct"
    assert (comounted.v1["memory"].root, comounted.v1["memory"].point) == (
        "/docker",
        "/sys/fs/cgroup/mem ory",
    )
    assert comounted.v2 is None
    v2 = parse_mountinfo(MOUNTINFO_V2.format(root=""))
    assert v2.v1 == {}
    assert v2.v2 is not None and v2.v2.point == "/sys/fs/cgroup"
    assert parse_mountinfo("") == parse_mountinfo("garbage\n")


def test_parse_proc_cgroup() -> None:
    v1, v2 = parse_proc_cgroup(PROC_CGROUP_V1)
    assert v1["memory"] == v1["cpu"] == v1["cpuacct"] == f"/docker/{CID}"
    assert v1["net_cls"] == "/"
    assert v2 == f"/docker/{CID}"
    assert parse_proc_cgroup(f"0::{SCOPE}\n") == ({}, SCOPE)
    comounted, _ = parse_proc_cgroup(f"2:cpu,cpuacct:/docker/{CID}\n")
    assert comounted == {"cpu": f"/docker/{CID}", "cpuacct": f"/docker/{CID}"}


def test_parse_net_dev() -> None:
    assert parse_net_dev(NET_DEV) == (
        InterfaceCounters("eth0", 11028, 1, 5, 3582, 2, 3),
        InterfaceCounters("eth1", 123456789012, 7, 8, 98765432109, 9, 10),
    )
    headers_only = "\n".join(NET_DEV.splitlines()[:3])  # lo is never reported
    assert parse_net_dev(headers_only) == ()
    assert parse_net_dev(NET_DEV.replace("  eth0:   11028", "  eth0:   x")) == (
        InterfaceCounters("eth1", 123456789012, 7, 8, 98765432109, 9, 10),
    )


def test_parse_cpu_max() -> None:
    assert parse_cpu_max("max 100000\n") == 0.0
    assert parse_cpu_max("50000 100000\n") == 0.5
    assert parse_cpu_max("150000 100000\n") == 1.5
    assert parse_cpu_max("20000 50000\n") == 0.4
    for bad in ("", "max", "x 100000", "50000 0"):
        with pytest.raises(ValueError):
            parse_cpu_max(bad)


def test_cgroup_v1(tmp_path: Path) -> None:
    reader = v1_host(tmp_path)
    assert reader.available
    figures = reader.read(4242, CID)
    assert figures is not None
    assert figures.memory_usage == 409600 - 12288  # total_inactive_file, not inactive_file
    assert figures.oom_kills == 2
    assert figures.cpu == CpuFigures(
        usage_seconds=3.372895361,
        limit_cores=0.2,
        periods=169,
        throttled_periods=167,
        throttled_seconds=12.692736608,
    )
    assert figures.network == parse_net_dev(NET_DEV)


def test_cgroup_v1_without_a_cpu_quota(tmp_path: Path) -> None:
    reader = v1_host(tmp_path)
    cpu = tmp_path / "sys" / "fs" / "cgroup" / "cpu" / "docker" / CID
    write_files(cpu, {"cpu.cfs_quota_us": "-1\n", "cpu.stat": CPU_STAT_V1.replace("169", "0")})
    (cpu / "cpu.cfs_period_us").unlink()  # not needed without a quota
    figures = reader.read(4242, CID)
    assert figures is not None
    assert figures.cpu.limit_cores == 0.0
    assert figures.cpu.periods == 0


def test_cgroup_v1_comounted_cpu_cpuacct_systemd_driver(tmp_path: Path) -> None:
    scope = f"/system.slice/docker-{CID}.scope"
    reader = fake_host(
        tmp_path,
        "26 25 0:23 / {root}/cg/cpu,cpuacct rw shared:8 - cgroup cgroup rw,cpu,cpuacct\n"
        "27 25 0:24 / {root}/cg/memory rw shared:9 - cgroup cgroup rw,memory\n",
        5,
        f"5:memory:{scope}\n2:cpu,cpuacct:{scope}\n1:name=systemd:{scope}\n",
    )
    write_files(
        tmp_path / "cg" / "cpu,cpuacct" / scope.lstrip("/"),
        {
            "cpuacct.usage": "2000000000\n",
            "cpu.stat": CPU_STAT_V1,
            "cpu.cfs_quota_us": "150000\n",
            "cpu.cfs_period_us": "100000\n",
        },
    )
    write_files(
        tmp_path / "cg" / "memory" / scope.lstrip("/"),
        {"memory.usage_in_bytes": "4096\n", "memory.stat": "", "memory.oom_control": ""},
    )
    figures = reader.read(5, CID)
    assert figures is not None
    assert figures.memory_usage == 4096
    assert figures.oom_kills is None  # a kernel before 4.13 has no oom_kill line
    assert (figures.cpu.usage_seconds, figures.cpu.limit_cores) == (2.0, 1.5)
    assert figures.network is None  # no net/dev here: left out, not sent as 0


def test_cgroup_v2_systemd_driver(tmp_path: Path) -> None:
    reader = v2_host(tmp_path)
    assert reader.available
    figures = reader.read(77, CID)
    assert figures is not None
    assert figures.memory_usage == 8000000 - 2500000
    assert figures.oom_kills == 3
    assert figures.cpu == CpuFigures(
        usage_seconds=3.372895,
        limit_cores=0.25,
        periods=1200,
        throttled_periods=300,
        throttled_seconds=45.0,
    )
    assert [i.interface for i in figures.network or ()] == ["eth0", "eth1"]


def test_cgroup_v2_without_a_cpu_quota(tmp_path: Path) -> None:
    reader = v2_host(tmp_path, cpu_max="max 100000\n")
    figures = reader.read(77, CID)
    assert figures is not None
    assert figures.cpu.limit_cores == 0.0


def test_cgroup_v2_without_the_cpu_controller(tmp_path: Path) -> None:
    # The cpu controller not enabled for the cgroup (as in hybrid mode's v2
    # hierarchy): cpu.stat has the usage only, and there is no cpu.max.
    reader = v2_host(tmp_path, cpu_max=None)
    directory = tmp_path / "sys" / "fs" / "cgroup" / SCOPE.lstrip("/")
    write_files(directory, {"cpu.stat": "\n".join(CPU_STAT_V2.splitlines()[:5]) + "\n"})
    figures = reader.read(77, CID)
    assert figures is not None
    assert figures.cpu == CpuFigures(usage_seconds=3.372895)
    assert figures.memory_usage == 8000000 - 2500000  # the rest is still read


def test_cgroup_mount_of_a_subtree(tmp_path: Path) -> None:
    reader = fake_host(
        tmp_path,
        "35 31 0:32 /docker {root}/mem rw - cgroup cgroup rw,memory\n",
        9,
        f"4:memory:/docker/{CID}\n",
    )
    write_files(tmp_path / "mem" / CID, {"memory.usage_in_bytes": "4096\n", "memory.stat": ""})
    figures = reader.read(9, CID)
    assert figures is not None and figures.memory_usage == 4096


def test_network_is_read_only_when_asked(tmp_path: Path) -> None:
    reader = v1_host(tmp_path)
    figures = reader.read(4242, CID, network=False)
    assert figures is not None
    assert figures.network is None
    assert figures.memory_usage is not None


def test_cgroup_of_another_container_is_refused(tmp_path: Path) -> None:
    # A recycled PID, or a PID read in the wrong namespace: never borrow numbers,
    # not even the network's.
    reader = v1_host(tmp_path)
    (tmp_path / "proc" / "4242" / "cgroup").write_text(PROC_CGROUP_V1.replace(CID, OTHER))
    write_files(
        tmp_path / "sys" / "fs" / "cgroup" / "memory" / "docker" / OTHER,
        {"memory.usage_in_bytes": "4096\n", "memory.stat": ""},
    )
    assert reader.read(4242, CID) is None


def test_cgroup_unreadable_cases(tmp_path: Path) -> None:
    reader = v1_host(tmp_path)
    assert reader.read(999, CID) is None  # no such process
    assert reader.read(0, CID) is None  # not running
    assert reader.read(4242, "") is None
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    (cgroup / "memory" / "docker" / CID / "memory.usage_in_bytes").write_text("junk\n")
    (cgroup / "cpu" / "docker" / CID / "cpu.cfs_quota_us").unlink()
    (cgroup / "cpuacct" / "docker" / CID / "cpuacct.usage").unlink()
    (tmp_path / "proc" / "4242" / "net" / "dev").unlink()
    figures = reader.read(4242, CID)
    assert figures is not None  # still the container's process: what can be read is
    assert figures.memory_usage is None
    assert figures.oom_kills is None  # read with the memory, from the same directory
    assert figures.cpu.limit_cores is None
    assert figures.cpu.periods == 169
    # No cpuacct.usage: the hybrid host's v2 cpu.stat gives the usage instead.
    assert figures.cpu.usage_seconds == 1e-6
    assert figures.network is None


def test_no_cgroup_hierarchy(tmp_path: Path) -> None:
    reader = fake_host(tmp_path, "", 1, f"0::/docker/{CID}\n")
    assert not reader.available
    figures = reader.read(1, CID)
    assert figures is not None
    assert (figures.memory_usage, figures.cpu) == (None, CpuFigures())
