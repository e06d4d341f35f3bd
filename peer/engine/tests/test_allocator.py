"""MLX_MESH_MALLOC: the engine restarts itself once with jemalloc when the system has it (same pid,
same pipes), says so in its hello, and never fails to start over it."""

import os
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
