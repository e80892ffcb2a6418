"""Key helpers.

    python3 -m actlog_client keygen SEED_FILE   # writes a new 32-byte seed (mode 0600), prints the public key
    python3 -m actlog_client pubkey SEED_FILE   # prints the public key of a seed file (raw, base64, or an actlog signer key)

The printed value is what `actlog keys add NAME --public-key ... --pdp PDP` takes.
"""
import base64
import os
import sys

from .signing import key_fingerprint, public_key_b64


def _read_key(path):
    """A raw 32-byte seed, the base64 of one, or an `actlog keygen` signer key."""
    data = open(path, "rb").read()
    if len(data) == 32 or data.startswith(b"PRIVATE+KEY+"):
        return data
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        sys.exit(f"{path}: not a 32-byte seed, its base64, or an actlog signer key")
    return seed


def main(argv):
    if len(argv) != 2 or argv[0] not in ("keygen", "pubkey"):
        sys.stderr.write(__doc__)
        return 2
    cmd, path = argv
    if cmd == "keygen":
        seed = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
        key = seed
    else:
        key = _read_key(path)
    print(public_key_b64(key))
    sys.stderr.write(f"fingerprint (a valid keyid): {key_fingerprint(key)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
