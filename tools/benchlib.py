"""Small helpers shared by the benchmark scripts in tools/."""
import os


def du(path):
    """Bytes of every file below `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def served_url(srv):
    """The http:// URL `actlog serve` (started with stderr piped as text)
    prints once it listens; exits if it stops first."""
    for line in srv.stderr:
        if " on http://" in line:
            return line.strip().split(" on ")[1]
    raise SystemExit("serve did not start")
