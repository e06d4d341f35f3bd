"""MLX_MESH_MALLOC: the engine restarts itself once with jemalloc when the system has it (same pid,
same pipes), says so in its hello, and never fails to start over it; MALLOC_CONF=thp:always survives
the restart and puts the engine's memory in transparent huge pages, which its stats count."""

import os
import re
import sys

import pytest

from conftest import ENGINE_DIR, engine_replies
from mlx_mesh_engine import allocator

JEMALLOC = allocator.chosen({"MLX_MESH_MALLOC": "auto"})


def hello_with(malloc, extra=None):
    (hello, stats), err = engine_replies(["hello", "stats"], {"MLX_MESH_BLAS": "", "MLX_MESH_MALLOC": malloc, **(extra or {})})
    return hello, stats, err


@pytest.mark.skipif(not sys.platform.startswith("linux") or JEMALLOC is None, reason="needs Linux with libjemalloc2")
def test_auto_restarts_with_jemalloc_and_keeps_serving_the_same_pipes():
    hello, stats, err = hello_with("auto")
    # Both frames were written before the restart began: the restarted process read them from the same pipe.
    assert hello["ok"] and hello["malloc"] == "libjemalloc.so.2", (hello, err)
    assert stats["ok"] and stats["id"] == 2


def test_system_keeps_the_system_malloc():
    hello, _, _ = hello_with("system")
    assert hello["ok"] and hello["malloc"] == "system"


def test_a_missing_library_starts_with_the_system_malloc_and_says_why():
    hello, _, err = hello_with("/nonexistent/libmalloc.so")
    assert hello["ok"] and hello["malloc"] == "system"
    assert "no such file" in err


def test_a_library_the_loader_refuses_does_not_loop():
    # A file that is not a shared object: the loader ignores it, and the engine does not try again.
    hello, _, _ = hello_with(os.path.join(ENGINE_DIR, "mlx_mesh_engine", "__init__.py"))
    assert hello["ok"] and hello["malloc"] == "system"


def test_chosen_follows_the_setting():
    assert allocator.chosen({"MLX_MESH_MALLOC": "system"}) is None
    assert allocator.chosen({"MLX_MESH_MALLOC": "/opt/lib/libtcmalloc.so"}) == (
        "/opt/lib/libtcmalloc.so" if sys.platform.startswith("linux") else None
    )


def _thp_mode():
    """The kernel's transparent huge page mode (always, madvise, never), or None without THP."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return re.search(r"\[(\w+)\]", f.read()).group(1)
    except (OSError, AttributeError):
        return None


def _huge_pages_after_a_big_tensor(extra):
    # 32 MiB through the engine (echo decodes it into an MLX array): MLX takes its buffer from malloc,
    # and keeps it cached after the reply, so stats sees the pages it landed in.
    tensor = {"dtype": "float32", "shape": [1, 8192, 1024], "data": bytes(32 << 20)}
    (echo, stats), err = engine_replies([{"op": "echo", "hidden": tensor}, "stats"], {"MLX_MESH_BLAS": "", "MLX_MESH_MALLOC": "auto", **extra})
    assert echo["ok"] and stats["ok"], (echo, stats, err)
    if stats["huge_pages_bytes"] is None:
        pytest.skip("this kernel does not report AnonHugePages (/proc/self/smaps_rollup)")
    return stats["huge_pages_bytes"]


@pytest.mark.skipif(JEMALLOC is None or _thp_mode() not in ("madvise", "always"), reason="needs libjemalloc2 and a kernel with transparent huge pages")
def test_malloc_conf_thp_always_puts_the_engine_in_huge_pages_and_stats_counts_them():
    # At least a quarter of the 32 MiB (a fragmented machine may not find a 2 MiB page for every part).
    assert _huge_pages_after_a_big_tensor({"MALLOC_CONF": "thp:always"}) >= 8 << 20
    if _thp_mode() == "madvise":
        # Here only memory that asks (madvise(MADV_HUGEPAGE)) gets them: by default nobody asks.
        assert _huge_pages_after_a_big_tensor({}) < 4 << 20
