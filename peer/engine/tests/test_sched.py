"""MLX_MESH_SCHED: on Linux the engine runs under SCHED_BATCH (MLX's threads too), says so in its hello,
and MLX's worker thread stops taking the core once per operation."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ENGINE_DIR, engine_replies
from mlx_mesh_engine import sched

LINUX = sys.platform.startswith("linux")


def hello_with(setting):
    env = {"MLX_MESH_BLAS": "", "MLX_MESH_MALLOC": "system"}
    if setting is not None:
        env["MLX_MESH_SCHED"] = setting
    (hello,), err = engine_replies(["hello"], env)
    return hello, err


@pytest.mark.skipif(not LINUX, reason="SCHED_BATCH is Linux's")
def test_the_engine_runs_under_sched_batch_by_default():
    hello, err = hello_with(None)
    assert hello["ok"] and hello["sched"] == "batch", (hello, err)


def test_normal_leaves_the_policy_alone():
    hello, _ = hello_with("normal")
    assert hello["ok"] and hello["sched"] == "normal"


def test_chosen_follows_the_setting():
    assert sched.chosen({"MLX_MESH_SCHED": "normal"}) == "normal"
    assert sched.chosen({"MLX_MESH_SCHED": "NORMAL "}) == "normal"
    assert sched.chosen({}) == ("batch" if LINUX else "normal")
    assert sched.chosen({"MLX_MESH_SCHED": "fifo"}) == ("batch" if LINUX else "normal")  # unknown: the default, with a warning


# Runs in a fresh process on one core: the policy set (or not), then MLX imported, then 20 evaluations of
# a chain of 200 small operations. Prints every thread's policy and the context switches per operation.
_PROBE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from mlx_mesh_engine import sched
active = sched.apply()
import mlx.core as mx

def switches():
    n = 0
    for t in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{t}/status") as f:
            n += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    return n

x = mx.ones((64,))
mx.eval(x)
before = switches()
for _ in range(20):
    y = x
    for _ in range(200):
        y = y * 1.0001 + 0.5
    mx.eval(y)
ops = 20 * 200 * 2
policies = sorted({os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")})
print(json.dumps({"active": active, "per_op": (switches() - before) / ops, "threads": len(os.listdir("/proc/self/task")), "policies": policies}))
"""


def probe(setting):
    env = dict(os.environ, MLX_MESH_SCHED=setting)
    out = subprocess.run([sys.executable, "-c", _PROBE, ENGINE_DIR], capture_output=True, timeout=120, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not LINUX, reason="SCHED_BATCH is Linux's")
def test_mlx_threads_inherit_it_and_stop_switching_per_operation():
    batch = probe("batch")
    assert batch["active"] == "batch"
    assert batch["threads"] > 1  # MLX's worker thread exists ...
    assert batch["policies"] == [os.SCHED_BATCH], batch  # ... and runs under SCHED_BATCH too
    # Under SCHED_BATCH the worker runs an evaluation's operations back to back: a few switches per
    # evaluation of 400 operations, not two per operation as when it preempts the main thread on every
    # task it is handed (the normal policy on one core: ~1-2 per operation, printed for comparison).
    normal = probe("normal")
    assert batch["per_op"] < 0.1, (batch, normal)
