"""Clusters: cluster.yaml checked offline against the launcher's schema; trials reading the dataset
as views of the object store's copy; and a smoke study on a simulated three-node cluster (a head
without CPUs and two 1-CPU nodes, all on this machine) whose trials spread over the nodes, and
which finishes although one node is removed in the middle of a phase.

The simulated cluster runs in its own process (ray.cluster_utils.Cluster) with its own Ray temp
folder, and the study runs as `python -m raymsa.study ... --address <head>`, so neither touches the
session's Ray instance (the ray_cluster fixture) nor any other Ray on the machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


# ---- cluster.yaml ---------------------------------------------------------------------------------


def _prepared(raw: dict) -> dict:
    """What `ray up` checks before it launches anything: defaults filled in, then the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg


def test_cluster_yaml_is_a_valid_launcher_config():
    from raymsa.search.tune import DRIVER_RESOURCE

    cfg = _prepared(yaml.safe_load(CLUSTER_YAML.read_text()))
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    # trial drivers of multi-worker trials are placed by this resource, on the head only
    assert head["resources"][DRIVER_RESOURCE] >= 1
    assert head["resources"]["CPU"] == 0, "the head should run drivers and services, not trials"
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    assert workers and all(DRIVER_RESOURCE not in t["resources"] for t in workers.values())
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers.values()), "GPU nodes"
    assert all(0 <= t["min_workers"] <= t["max_workers"] for t in workers.values())
    assert sum(t["max_workers"] for t in workers.values()) >= cfg["max_workers"] > 0
    assert cfg["idle_timeout_minutes"] > 0
    # every node installs raymsa from the synced checkout, and sees the shared results folder
    assert "/home/ray/raymsa" in cfg["file_mounts"]
    setup = " ; ".join(cfg["setup_commands"])
    assert "torch==" in setup and "pip install -q -e /home/ray/raymsa" in setup
    assert "-v /mnt/efs:/mnt/efs" in cfg["docker"]["run_options"]
    assert any("/mnt/efs" in c for c in cfg["initialization_commands"])
    # worker nodes must reach the dashboard's State API (Train releases stopped trials' workers)
    assert any("--dashboard-host=0.0.0.0" in c for c in cfg["head_start_ray_commands"])
    # ... which is safe only inside a security group that admits SSH from outside and nothing else
    # (the launcher adds SSH and all-within-the-group itself; declared extra rules open more)
    sg = cfg["provider"]["security_group"]
    assert sg["GroupName"]
    assert all(r.get("FromPort") == 22 == r.get("ToPort") or "IpRanges" not in r for r in sg.get("IpPermissions", []))
    assert not any("SecurityGroupIds" in t["node_config"] for t in types.values()), "would bypass the group"
    bad = yaml.safe_load(CLUSTER_YAML.read_text())
    bad["provider"]["security_group"]["GroupNme"] = "x"
    with pytest.raises(Exception, match="GroupNme"):
        _prepared(bad)
    # the header tells how to use it
    header = CLUSTER_YAML.read_text().split("\ncluster_name:")[0]
    for command in ("ray up cluster.yaml", "ray exec cluster.yaml", "ray dashboard cluster.yaml",
                    "ray attach cluster.yaml -p 6006", "ray down cluster.yaml", "--storage /mnt/efs/"):
        assert command in header


def test_cluster_yaml_mistakes_are_refused():
    import jsonschema

    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    typo = copy.deepcopy(raw)
    typo["available_node_types"]["gpu_1x"]["min_worker"] = 2  # min_workers
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        _prepared(typo)
    unknown = copy.deepcopy(raw)
    unknown["idle_timeout"] = 5  # idle_timeout_minutes
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout"):
        _prepared(unknown)
    too_many = copy.deepcopy(raw)
    too_many["available_node_types"]["gpu_1x"]["min_workers"] = raw["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _prepared(too_many)


# ---- the dataset in trials ------------------------------------------------------------------------


def _data_probe(config, data):
    """A Tune trial that gets the dataset as the study's trials do and reports what it got."""
    import numpy as np
    from ray import tune

    from raymsa.train.batches import SplitTensors

    d = data.get()
    split = d["train"]
    arrays = {m: getattr(split, m) for m in ("text", "audio", "vision", "labels", "text_bert")}
    t = SplitTensors.from_split(split)
    tensors = {"text": t.feats["text"], "audio": t.feats["audio"], "vision": t.feats["vision"],
               "labels": t.labels, "text_bert": t.text_ids}
    tune.report({
        "writeable": sum(bool(a.flags.writeable) for a in arrays.values()),
        "owns_data": sum(bool(a.flags.owndata) for a in arrays.values()),
        # torch.from_numpy: the tensors are the arrays' memory, not copies of it
        "shared_with_tensors": sum(tensors[k].data_ptr() == a.ctypes.data for k, a in arrays.items()),
        "n_arrays": len(arrays),
        "float32": int(all(a.dtype == np.float32 for a in (split.text, split.audio, split.vision))),
    })


@pytest.mark.ray
def test_trials_read_the_object_store_copy_without_copying(ray_cluster, tiny_data, tmp_path):
    import ray
    from ray import tune

    from raymsa.search.tune import DataHandle

    handle = DataHandle(ray.put(tiny_data))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_data_probe, data=handle), {"CPU": 1}),
        tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="probe", verbose=0))
    for r in tuner.fit():
        assert r.error is None, r.error
        m = r.metrics
        assert m["float32"] == 1
        # read-only arrays that do not own their memory: views of the node's object store
        assert m["writeable"] == 0 and m["owns_data"] == 0
        assert m["shared_with_tensors"] == m["n_arrays"]


# ---- a simulated cluster ---------------------------------------------------------------------------

# Runs in its own process: starts the cluster, prints {"address", "nodes": {name: node id}}, then
# obeys "remove <name>" lines on stdin, and shuts the cluster down when stdin closes.
_CLUSTER = r"""
import json, socket, sys
from ray.cluster_utils import Cluster

with socket.socket() as s:  # a free port: 8265 may belong to another Ray on this machine
    s.bind(("127.0.0.1", 0))
    dashboard_port = s.getsockname()[1]
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 0, "resources": {"DRIVER_RESOURCE": 8}, "include_dashboard": True,
    "dashboard_port": dashboard_port, "object_store_memory": 200 * 2**20})
nodes = {"head": cluster.head_node}
for name in ("n1", "n2"):
    nodes[name] = cluster.add_node(num_cpus=1, object_store_memory=200 * 2**20)
cluster.wait_for_nodes()
print(json.dumps({"address": cluster.address, "nodes": {k: n.node_id for k, n in nodes.items()}}), flush=True)
for line in sys.stdin:
    cmd, name = line.split()
    cluster.remove_node(nodes.pop(name))
    print(json.dumps({"removed": name}), flush=True)
cluster.shutdown()
"""

EPOCHS = 4
SEEDS = [1111]


def _lines(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)


def _answer(ctl: subprocess.Popen, q: queue.Queue, timeout: float, log: Path) -> dict:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            return json.loads(q.get(timeout=0.2))
        except queue.Empty:
            if ctl.poll() is not None:
                break
    raise RuntimeError(f"the simulated cluster did not answer:\n{log.read_text()[-3000:]}")


def _results(folder: Path) -> dict[str, list[dict]]:
    """Tune's result.json of every trial under folder: trial folder name -> reported rows."""
    out = {}
    for f in folder.glob("*/result.json"):
        rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        out[f.parent.name] = rows
    return out


def _digests(out: Path) -> dict[str, str]:
    files = [out / "study.json", *sorted((out / "search").glob("*/*")), *sorted((out / "runs").glob("*/eval.csv"))]
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def study_on_three_nodes(tmp_path_factory):
    """The smoke study (one scenario, fsrf + late_fusion, one seed, 4 epochs) on the simulated
    cluster; the node running a retrain trial is removed once that trial has finished an epoch."""
    from raymsa.data import write_synth

    work = tmp_path_factory.mktemp("cluster")
    data = write_synth(work / "tiny.pkl", "mosi", seed=0, scale=0.08)
    # a short private temp dir: Ray's socket paths must stay under 108 characters
    ray_tmp = tempfile.mkdtemp(prefix="rmc", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    from raymsa.search.tune import DRIVER_RESOURCE

    ctl_log = open(work / "cluster.log", "w")
    ctl = subprocess.Popen([sys.executable, "-c", _CLUSTER.replace("DRIVER_RESOURCE", DRIVER_RESOURCE)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ctl_log, text=True, env=env, cwd=work)
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(ctl.stdout, answers), daemon=True).start()
    study = None
    try:
        info = _answer(ctl, answers, 120, work / "cluster.log")
        started_s = time.perf_counter() - t0
        storage = work / "results"
        log = open(work / "study.log", "w")
        study = subprocess.Popen(
            [sys.executable, "-m", "raymsa.study", "fsrf_sweep", "--smoke", "--storage", str(storage),
             "--address", info["address"], "--set", f"data.path={data}",
             "--set", "scenarios=[{kind: intra, levels: [0.0, 0.5]}]", "--set", f"seeds={SEEDS}",
             "--set", f"train.epochs={EPOCHS}"],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        out = storage / "fsrf_sweep-smoke"
        workers = {info["nodes"]["n1"]: "n1", info["nodes"]["n2"]: "n2"}
        removed = None
        deadline = time.perf_counter() + 240
        while removed is None and study.poll() is None and time.perf_counter() < deadline:
            for trial, rows in _results(out / "tune" / "retrain").items():
                last = rows[-1] if rows else {}
                if last.get("node_id") in workers and 1 <= last.get("epoch", 0) < EPOCHS:
                    before = _digests(out)
                    name = workers[last["node_id"]]
                    ctl.stdin.write(f"remove {name}\n")
                    ctl.stdin.flush()
                    assert _answer(ctl, answers, 60, work / "cluster.log") == {"removed": name}
                    removed = {"node": name, "node_id": last["node_id"], "trial": trial,
                               "epoch": last["epoch"], "files_before": before}
                    break
            time.sleep(0.05)
        rc = study.wait(timeout=max(1.0, deadline - time.perf_counter()))
        log.close()
        yield {"rc": rc, "log": (work / "study.log").read_text(), "out": out, "nodes": info["nodes"],
               "removed": removed, "seconds": time.perf_counter() - t0, "cluster_start_s": started_s}
    finally:
        if study is not None and study.poll() is None:
            study.kill()
        if ctl.poll() is None:
            ctl.stdin.close()
            try:
                ctl.wait(timeout=60)
            except subprocess.TimeoutExpired:
                ctl.kill()
        ctl_log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.heavy
@pytest.mark.slow
def test_trials_spread_over_the_nodes_and_complete(study_on_three_nodes):
    s = study_on_three_nodes
    assert s["rc"] == 0, s["log"][-3000:]
    workers = {s["nodes"]["n1"], s["nodes"]["n2"]}
    search = _results(s["out"] / "tune" / "search__fsrf__intra")
    assert len(search) == 2  # the smoke overlay's trials
    used = {row["node_id"] for rows in search.values() for row in rows}
    assert used == workers, "both 1-CPU nodes ran search trials (the head has no CPU for them)"
    trials = (s["out"] / "search" / "fsrf__intra" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and all(",DONE," in row for row in trials[1:])
    for model in ("fsrf", "late_fusion"):
        for seed in SEEDS:
            assert (s["out"] / "runs" / f"{model}__intra__seed{seed}" / "eval.csv").is_file()
    assert (s["out"] / "report" / "report.md").is_file()


@pytest.mark.heavy
@pytest.mark.slow
def test_a_node_lost_mid_phase_costs_only_its_trials_lost_epochs(study_on_three_nodes):
    s = study_on_three_nodes
    lost = s["removed"]
    assert lost is not None, "no retrain trial was caught on a worker node:\n" + s["log"][-3000:]
    assert s["rc"] == 0, s["log"][-3000:]
    # the trial of the removed node went on elsewhere from its checkpoint, not from epoch 1
    rows = _results(s["out"] / "tune" / "retrain")[lost["trial"]]
    after = [r for r in rows if r["node_id"] != lost["node_id"]]
    assert after, f"the lost trial never ran again: {rows}"
    assert {r["node_id"] for r in after} == {s["nodes"]["n1"], s["nodes"]["n2"]} - {lost["node_id"]}
    assert after[0]["epoch"] > 1 and after[-1]["epoch"] == EPOCHS
    assert [r["epoch"] for r in rows if r["node_id"] == lost["node_id"]][-1] >= lost["epoch"]
    # everything that had finished before the loss is still there, byte for byte
    now = {k: v for k, v in _digests(s["out"]).items() if k in lost["files_before"]}
    assert now == lost["files_before"]
    assert any(k.startswith("search/") for k in now)
    for model in ("fsrf", "late_fusion"):
        assert (s["out"] / "runs" / f"{model}__intra__seed{SEEDS[0]}" / "eval.csv").is_file()
