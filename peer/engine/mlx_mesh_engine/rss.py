"""The engine process's resident memory: now, its peak so far (what loading a shard really cost), and
how much of it is in transparent huge pages."""

import resource
import sys


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # no procfs (macOS): the peak is the best figure there is
        return peak_rss_bytes()


def huge_pages_bytes():
    """Memory of this process in transparent huge pages (Linux), or None where the kernel does not say."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
