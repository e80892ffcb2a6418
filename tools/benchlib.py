"""Small helpers shared by the benchmark scripts in tools/."""
import os
import socket
import urllib.request


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


def free_port():
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url, token, name):
    """One unlabelled value of a running server's /metrics."""
    req = urllib.request.Request(f"{url}/metrics", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise SystemExit(f"no metric {name}")

