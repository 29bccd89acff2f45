"""raymsa.cluster: a local study's Ray listens on loopback only; the object store is sized
from what a caller puts there, or refused with the setting to change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Starts Ray as a study does, makes it start a worker and the dashboard's agents, then prints every
# listening socket of this process and its descendants (ss -ltnp), as JSON.
_LISTEN = r"""
import json, os, subprocess, sys, time
from raymsa.cluster import start_ray
import ray

ctx = start_ray(None, resources={"raymsa_driver": 1}, num_cpus=1, _temp_dir=sys.argv[1], configure_logging=False)

@ray.remote
def pid():
    return os.getpid()

ray.get(pid.remote())
time.sleep(3)  # the dashboard agent and runtime-env agent open their ports a little later

def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += kids.get(p, [])
    return out

mine = tree(os.getpid())
rows = []
for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
    pids = {int(x.split("=")[1]) for x in line.replace(")", ",").split(",") if x.startswith("pid=")}
    if pids & mine:
        rows.append({"local": line.split()[3], "proc": line.split()[-1]})
print(json.dumps({"node_ip": ctx.address_info["node_ip_address"], "listening": rows}))
ray.shutdown()
"""


@pytest.mark.heavy
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_a_local_study_listens_on_loopback_only(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lo")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run([sys.executable, "-c", _LISTEN, str(tmp_path / "ray")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["node_ip"] == "127.0.0.1"
    procs = " ".join(r["proc"] for r in got["listening"])
    # the services a study needs were seen listening, so the check below is not vacuous
    for name in ("gcs_server", "raylet", "ray::IDLE"):
        assert name in procs, got
    exposed = [r for r in got["listening"] if r["local"].rsplit(":", 1)[0] not in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")]
    assert not exposed, exposed


def test_the_store_is_sized_from_what_goes_there(monkeypatch):
    import raymsa.cluster as c

    GiB = 2**30
    monkeypatch.setattr(c, "_default_store_bytes", lambda: 4 * GiB)
    monkeypatch.setattr(c, "_shm_bytes", lambda: 12 * GiB)
    assert c.local_store_bytes(0) is None  # the study's data is memory-mapped: Ray's default is plenty
    assert c.local_store_bytes(1 * GiB) is None
    assert c.local_store_bytes(8 * GiB) == 8 * GiB + c.HEADROOM
    with pytest.raises(c.ClusterError, match=r"needs 14\.5 GiB .* /dev/shm has 12\.0 GiB free: enlarge /dev/shm"):
        c.local_store_bytes(14 * GiB)
