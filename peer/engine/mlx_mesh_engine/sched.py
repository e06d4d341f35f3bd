"""The engine's CPU scheduling policy on Linux, chosen with MLX_MESH_SCHED: SCHED_BATCH by default.

MLX's CPU backend runs every operation on a worker thread of its own: evaluating a graph, the engine's
main thread queues one task per operation and wakes the worker each time. Where the engine has one
core (a pinned peer, a one-core machine), the woken worker preempts the main thread at once, runs one
small task, sleeps again and hands the core back: two context switches per operation, ~800 per decode
step of 15 layers (`/proc/<pid>/task/*/status`), and every switch costs the caches too. Under
SCHED_BATCH a woken thread does not preempt the running one (Linux's fair scheduler leaves batch
tasks to the tick): the main thread queues a step's operations in one go, the worker then runs them
back to back, ~50 switches per step. The numbers computed are the same; only who runs when changes.

Set before MLX is imported, so its threads inherit it. Asking for SCHED_BATCH needs no privilege (it
is SCHED_OTHER's own priority, with a hint). The peer itself stays SCHED_OTHER, so its wake-ups
(a frame to pass on) still preempt the engine on a shared core.

MLX_MESH_SCHED: "batch" (the default on Linux) or "normal" (leave the policy as inherited).
macOS: nothing to choose (no SCHED_BATCH; the Metal backend's queue works differently).
"""

import logging
import os
import sys

log = logging.getLogger("mlx_mesh_engine")


def chosen(env=None) -> str:
    """The policy this process should run with: "batch" or "normal"."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux") or not hasattr(os, "SCHED_BATCH"):
        return "normal"
    setting = (env.get("MLX_MESH_SCHED", "batch").strip() or "batch").lower()
    if setting not in ("batch", "normal"):
        log.warning("MLX_MESH_SCHED=%s: expected batch or normal; using batch", setting)
        return "batch"
    return setting


def active() -> str:
    """This thread's policy: "batch", "normal" or another policy's number."""
    if not hasattr(os, "sched_getscheduler"):
        return "normal"
    policy = os.sched_getscheduler(0)
    if policy == getattr(os, "SCHED_BATCH", None):
        return "batch"
    return "normal" if policy == os.SCHED_OTHER else str(policy)


def apply() -> str:
    """Sets the chosen policy on this thread (threads started later inherit it); returns what is active.
    Call it before importing mlx."""
    if chosen() == "batch" and active() == "normal":
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError as err:
            log.warning("could not set SCHED_BATCH (%s); the engine keeps its scheduling policy", err)
    return active()
