"""Small helpers shared by the benchmark scripts in tools/."""
import os


def du(path):
    """Bytes of every file below `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total
