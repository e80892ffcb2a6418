"""A directory of batches not yet acknowledged by the server.

Each batch is one file `NNNNNNNNNNNN.ndjson`: its signed envelopes, one per
line, exactly as they are sent. A file appears atomically (written to a
temporary name, fsynced, renamed, directory fsynced), so after a crash a
batch is either whole or absent; leftover temporary files were never
acknowledged and are removed. File numbers only grow, so sorting the names
gives the order the batches were made in. Batches the server refused
because of their content go to `rejected/` with the server's answer beside
them, so they are kept but no longer block the queue.

One client at a time may use a directory: it holds an exclusive lock on
`.lock` (flock) while open.
"""
import os
import re

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

_NAME = re.compile(r"^(\d{12})\.ndjson$")


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_durably(directory, name, data):
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(directory)
    return path


class Spool:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.rejected_dir = os.path.join(self.dir, "rejected")
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise RuntimeError(f"spool directory {self.dir} is in use by another client") from None
        for name in os.listdir(self.dir):
            if name.startswith(".tmp-"):  # a write cut short: never acknowledged
                os.unlink(os.path.join(self.dir, name))
        numbers = [int(m.group(1)) for m in map(_NAME.match, os.listdir(self.dir)) if m]
        self._next = max(numbers, default=0) + 1

    def pending(self):
        """Paths of the spooled batches, oldest first."""
        names = sorted(n for n in os.listdir(self.dir) if _NAME.match(n))
        return [os.path.join(self.dir, n) for n in names]

    def write(self, envelopes):
        """Spools a new batch (a list of envelope bytes); returns its path."""
        name = f"{self._next:012d}.ndjson"
        self._next += 1
        return _write_durably(self.dir, name, b"\n".join(envelopes) + b"\n")

    def rewrite(self, path, envelopes):
        """Atomically replaces a spooled batch with fewer envelopes."""
        _write_durably(os.path.dirname(path), os.path.basename(path), b"\n".join(envelopes) + b"\n")

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return [line for line in f.read().split(b"\n") if line.strip()]

    @staticmethod
    def remove(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def reject(self, path, envelopes, error_body):
        """Keeps refused envelopes under rejected/ with the server's answer."""
        os.makedirs(self.rejected_dir, exist_ok=True)
        stem = os.path.basename(path).split(".")[0]
        n = 0
        while os.path.exists(os.path.join(self.rejected_dir, f"{stem}-{n}.ndjson")):
            n += 1
        _write_durably(self.rejected_dir, f"{stem}-{n}.error.json", error_body or b"")
        _write_durably(self.rejected_dir, f"{stem}-{n}.ndjson", b"\n".join(envelopes) + b"\n")

    def close(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
