#!/usr/bin/env python3
"""Independent reader of a C2SP tlog-tiles log (c2sp.org/tlog-tiles) over HTTP.

Written from the C2SP specs and RFC 6962 alone; it shares no code with the
project, so a mistake repeated by the log's writer and its own reader shows up.

Usage:
  python3 tests/tlog/tiles_check.py --url http://127.0.0.1:PORT/tlog --vkey VKEY
      [--token TOKEN] [--old-checkpoint FILE] [--cafile PEM] [--timeout S]
  python3 tests/tlog/tiles_check.py --self-test

What it checks, in order:
  1. <url>/checkpoint (Content-Type `text/plain; charset=utf-8`, no long-lived
     caching) is a signed note with a valid Ed25519 (type 0x01) signature by
     VKEY, whose origin line is the VKEY name; size and root are parsed.
  2. Every entry bundle for that size (`tile/entries/<N>` and the partial
     `tile/entries/<N>.p/<W>`), alternately asking for `Accept-Encoding: gzip`
     and `identity` and decoding `Content-Encoding: gzip`: uint16-BE length
     prefixed entries, exactly W of them, no trailing bytes.
  3. The RFC 6962 root of all the leaves equals the checkpoint root.
  4. Every hash tile of every level for that size: exactly W*32 bytes, and hash
     i of tile n at level l is MTH of leaves [(256n+i)*256^l, (256n+i+1)*256^l).
  5. Content-Type `application/octet-stream` on tiles and bundles; full ones
     carry Cache-Control `immutable` or a max-age of at least a day.
  6. The first and last tile of each level again under Go's alias
     `tile/8/<L>/<N>[.p/<W>]`: identical bytes.
  7. Non-canonical tile paths, and tiles needing more leaves than the
     checkpoint has, do not answer 200.
  8. With --old-checkpoint: that note verifies too, and its root is the MTH of
     the first old-size leaves (the old tree is a prefix of the new one).

If a partial tile of this size is gone (a log MAY drop it once the full tile
exists), the full tile is used instead, provided a fresh checkpoint shows the
log has grown that far; likewise a "beyond the checkpoint" tile that answers 200
is only a failure if a fresh checkpoint does not cover it.

Output: one JSON line {"tree_size", "root", "hash_tiles", "bundles",
"alias_checked", "negative_checked", "partial_fallbacks"}; exit 0. On failure, exit 1 with one line
on stderr.  Needs: cryptography (Ed25519).
"""
import argparse
import base64
import binascii
import gzip
import hashlib
import http.client
import json
import ssl
import sys
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rfc6962 import key_id, leaf_hash, mth, node_hash  # noqa: F401

EM_DASH = "\u2014"
TILE_WIDTH = 256
HASH_SIZE = 32
MIN_IMMUTABLE_MAX_AGE = 86400  # "long-lived": at least a day
MAX_CHECKPOINT_MAX_AGE = 60  # "no longer than a few seconds", leniently


class CheckFailed(Exception):
    pass


def fail(msg, *args):
    raise CheckFailed(msg % args if args else msg)


# --- tile paths ------------------------------------------------------------------


def encode_index(n):
    """Tile index -> 3-digit groups, all but the last prefixed with `x`."""
    if n < 0:
        raise ValueError("negative tile index")
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(("x%03d" if i < len(groups) - 1 else "%03d") % g for i, g in enumerate(groups))


def tile_path(level, index, width, go_alias=False):
    """`tile/<L>/<N>[.p/<W>]`; level "entries" for bundles; Go's `tile/8/...` alias."""
    path = "tile/%s%s/%s" % ("8/" if go_alias else "", level, encode_index(index))
    if width != TILE_WIDTH:
        path += ".p/%d" % width
    return path


def tiles_for_size(size):
    """[(level, index, width)] of every hash tile a tree of `size` has."""
    tiles = []
    level = 0
    while size >> (8 * level) > 0:
        m = size >> (8 * level)
        tiles += [(level, n, TILE_WIDTH) for n in range(m // TILE_WIDTH)]
        if m % TILE_WIDTH:
            tiles.append((level, m // TILE_WIDTH, m % TILE_WIDTH))
        level += 1
    return tiles


# --- signed notes and checkpoints ----------------------------------------------------


def parse_vkey(vkey):
    """An Ed25519 note vkey `name+hex8+base64(0x01 || pub)` -> (name, id, key)."""
    parts = vkey.split("+", 2)  # base64 may itself contain '+'
    if len(parts) != 3:
        fail("vkey %r is not name+id+key", vkey)
    name, hex_id, b64 = parts
    try:
        raw = base64.b64decode(b64, validate=True)
        kid = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError):
        fail("vkey %r is not name+hex+base64", vkey)
    if len(hex_id) != 8 or len(raw) != 33 or raw[0] != 0x01:
        fail("vkey %r is not an Ed25519 (type 0x01) note key", vkey)
    if kid != key_id(name, 0x01, raw[1:]):
        fail("vkey %r: key id does not match the key", vkey)
    return name, kid, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note, vkey, what):
    """Verify a signed checkpoint note -> (size, root, text)."""
    name, kid, pub = vkey
    try:
        note = note.decode("utf-8")
    except UnicodeDecodeError:
        fail("%s is not UTF-8", what)
    if not note.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in note):
        fail("%s is not a well-formed note", what)
    sep = note.rfind("\n\n")
    if sep < 0 or sep + 2 == len(note):
        fail("%s has no signature lines", what)
    text, block = note[: sep + 1], note[sep + 2 :]
    verified = False
    for line in block[:-1].split("\n"):
        fields = line.split(" ")
        if len(fields) != 3 or fields[0] != EM_DASH or not fields[1]:
            fail("%s: bad signature line %r", what, line[:80])
        try:
            raw = base64.b64decode(fields[2], validate=True)
        except binascii.Error:
            fail("%s: signature line is not base64", what)
        if len(raw) < 5:
            fail("%s: signature line too short", what)
        if fields[1] != name or raw[:4] != kid:
            continue  # someone else's signature (a witness's, say): ignored
        try:
            pub.verify(raw[4:], text.encode())
        except InvalidSignature:
            fail("%s: the log's signature does not verify", what)
        verified = True
    if not verified:
        fail("%s carries no signature by the log key", what)
    lines = text[:-1].split("\n")
    if len(lines) < 3 or "" in lines:
        fail("%s: checkpoint needs origin, size and root lines", what)
    if lines[0] != name:
        fail("%s: origin %r is not the key name %r", what, lines[0], name)
    if not lines[1].isdigit() or (len(lines[1]) > 1 and lines[1][0] == "0"):
        fail("%s: bad tree size %r", what, lines[1])
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        root = b""
    if len(root) != HASH_SIZE:
        fail("%s: bad root hash %r", what, lines[2])
    return int(lines[1]), root, text


# --- HTTP ------------------------------------------------------------------------------


class Client:
    """Keep-alive GETs below one URL prefix, with gzip decoding and no redirects."""

    def __init__(self, url, token=None, cafile=None, timeout=30):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            fail("--url must be http:// or https://")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.prefix = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if u.scheme == "https" else None
        self.conn = None
        self.flip = False

    def _connect(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def get(self, rel, encoding=None):
        """GET prefix/rel -> (status, {lowercase header: value}, decoded body).

        Without `encoding`, alternates between asking for gzip and identity."""
        if encoding is None:
            self.flip = not self.flip
            encoding = "gzip" if self.flip else "identity"
        headers = {"Accept-Encoding": encoding}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        for attempt in (1, 2):  # a kept-alive connection may have been closed
            try:
                if self.conn is None:
                    self.conn = self._connect()
                self.conn.request("GET", self.prefix + "/" + rel, headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.conn = None
                if attempt == 2:
                    fail("GET %s: %s", rel, e)
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        coding = hdrs.get("content-encoding", "identity").strip().lower()
        if coding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as e:
                fail("GET %s: bad gzip body: %s", rel, e)
        elif coding not in ("", "identity"):
            fail("GET %s: unexpected Content-Encoding %r", rel, coding)
        return resp.status, hdrs, body


def media_type(headers):
    """Normalised Content-Type: lower case, no spaces around ';'."""
    return ";".join(p.strip() for p in headers.get("content-type", "").lower().split(";"))


def cache_directives(headers):
    out = {}
    for part in headers.get("cache-control", "").lower().split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key] = value.strip('"')
    return out


def max_age(directives):
    try:
        return int(directives.get("s-maxage", directives.get("max-age", "")))
    except ValueError:
        return None


# --- the checker --------------------------------------------------------------------------


class Checker:
    def __init__(self, client, vkey):
        self.http = client
        self.vkey = vkey

    def checkpoint(self):
        status, hdrs, body = self.http.get("checkpoint")
        if status != 200:
            fail("GET checkpoint: HTTP %d", status)
        if media_type(hdrs) != "text/plain;charset=utf-8":
            fail("checkpoint Content-Type %r, want text/plain; charset=utf-8", hdrs.get("content-type"))
        cc = cache_directives(hdrs)
        age = max_age(cc)
        if "immutable" in cc or (age is not None and age > MAX_CHECKPOINT_MAX_AGE):
            fail("checkpoint is cached too long: Cache-Control %r", hdrs.get("cache-control"))
        return open_checkpoint(body, self.vkey, "checkpoint")

    def fetch_tile(self, path, width, full_path, needed_leaves):
        """GET one tile or bundle that this checkpoint implies -> body bytes.

        A partial one that is gone may be replaced by its full tile, but only
        once a fresh checkpoint shows the log has grown over it."""
        status, hdrs, body = self.http.get(path)
        if status == 404 and width != TILE_WIDTH and self.grown_past(needed_leaves):
            status, hdrs, body = self.http.get(full_path)
            self.fallbacks += 1
            if status == 200:
                self.check_tile_headers(full_path, hdrs, True)
                return body, True
        if status != 200:
            fail("GET %s: HTTP %d", path, status)
        self.check_tile_headers(path, hdrs, width == TILE_WIDTH)
        return body, False

    def check_tile_headers(self, path, hdrs, full):
        if media_type(hdrs) != "application/octet-stream":
            fail("%s: Content-Type %r, want application/octet-stream", path, hdrs.get("content-type"))
        if full:
            cc = cache_directives(hdrs)
            age = max_age(cc)
            if "immutable" not in cc and (age is None or age < MIN_IMMUTABLE_MAX_AGE):
                fail("%s: full tile without long-lived caching (Cache-Control %r)", path, hdrs.get("cache-control"))

    def grown_past(self, leaves):
        """Does a fresh checkpoint cover at least `leaves` leaves?"""
        size, _, _ = self.checkpoint()
        return size >= leaves

    def run(self, old_note=None):
        self.fallbacks = 0
        size, root, _ = self.checkpoint()
        old = open_checkpoint(old_note, self.vkey, "old checkpoint") if old_note is not None else None

        # 2. Entry bundles, one per level-0 tile.
        leaves = []
        bundles = 0
        for _, n, w in [t for t in tiles_for_size(size) if t[0] == 0]:
            path = tile_path("entries", n, w)
            body, from_full = self.fetch_tile(path, w, tile_path("entries", n, TILE_WIDTH), n * TILE_WIDTH + TILE_WIDTH)
            entries, off = [], 0
            while off < len(body):
                if off + 2 > len(body):
                    fail("%s: truncated length prefix at byte %d", path, off)
                length = int.from_bytes(body[off : off + 2], "big")
                if off + 2 + length > len(body):
                    fail("%s: entry %d runs past the end", path, len(entries))
                entries.append(body[off + 2 : off + 2 + length])
                off += 2 + length
            if from_full:
                entries = entries[:w] if len(entries) == TILE_WIDTH else entries
            if len(entries) != w:
                fail("%s: %d entries, want exactly %d", path, len(entries), w)
            leaves += entries
            bundles += 1
        if len(leaves) != size:
            fail("bundles hold %d entries, checkpoint says %d", len(leaves), size)
        hashes = [leaf_hash(e) for e in leaves]

        # 3. The root.
        if mth(hashes, 0, size) != root:
            fail("the RFC 6962 root of the %d bundled entries is not the checkpoint root", size)

        # 4./5. Hash tiles, checked hash by hash against the leaves.
        tiles = tiles_for_size(size)
        tile_bytes = {}
        read_full = set()  # partial tiles that were gone, read from their full tile
        for level, n, w in tiles:
            path = tile_path(level, n, w)
            span = TILE_WIDTH**level  # leaves under one hash of this level
            body, from_full = self.fetch_tile(
                path, w, tile_path(level, n, TILE_WIDTH), (n * TILE_WIDTH + TILE_WIDTH) * span
            )
            if from_full and len(body) == TILE_WIDTH * HASH_SIZE:
                body = body[: w * HASH_SIZE]
                read_full.add((level, n, w))
            if len(body) != w * HASH_SIZE:
                fail("%s: %d bytes, want %d", path, len(body), w * HASH_SIZE)
            for i in range(w):
                lo = (n * TILE_WIDTH + i) * span
                if body[i * HASH_SIZE : (i + 1) * HASH_SIZE] != mth(hashes, lo, lo + span):
                    fail("%s: hash %d is not MTH(leaves[%d:%d])", path, i, lo, lo + span)
            tile_bytes[(level, n, w)] = body

        # 6. Go's alias for the first and last tile of each level.
        alias = 0
        for level in sorted({t[0] for t in tiles}):
            row = [t for t in tiles if t[0] == level]
            for level_, n, w in {row[0], row[-1]}:
                full = (level_, n, w) in read_full
                path = tile_path(level_, n, TILE_WIDTH if full else w, go_alias=True)
                status, hdrs, body = self.http.get(path)
                body = body[: w * HASH_SIZE] if full else body
                if status != 200:
                    fail("GET %s: HTTP %d", path, status)
                if media_type(hdrs) != "application/octet-stream":
                    fail("%s: Content-Type %r", path, hdrs.get("content-type"))
                if body != tile_bytes[(level_, n, w)]:
                    fail("%s: not the same bytes as %s", path, tile_path(level_, n, w))
                alias += 1

        # 7. Paths that must not answer 200.
        negative = self.negative_checks(size, tiles)

        # 8. The old checkpoint is a prefix of this one.
        if old is not None:
            old_size, old_root, _ = old
            if old_size > size:
                fail("old checkpoint size %d is larger than the current %d", old_size, size)
            if mth(hashes, 0, old_size) != old_root:
                fail("old checkpoint root is not the root of the first %d entries", old_size)

        return {
            "tree_size": size,
            "root": base64.b64encode(root).decode(),
            "hash_tiles": len(tiles),
            "bundles": bundles,
            "alias_checked": alias,
            "negative_checked": negative,
            "partial_fallbacks": self.fallbacks,
        }

    def negative_checks(self, size, tiles):
        # Spellings that are never canonical, whatever the size.
        bad = [
            "tile/0/0",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/x000/000",
            "tile/0/x000/001",
            "tile/0/001/000",
            "tile/0/x1/000",
            "tile/0/000.p/0",
            "tile/0/000.p/00",
            "tile/0/000.p/01",
            "tile/0/000.p/256",
            "tile/0/000.p/",
            "tile/0/000.p",
            "tile/0/000/",
            "tile/00/000",
            "tile/01/000",
            "tile/-1/000",
            "tile/64/000",
            "tile/0/-01",
            "tile/0/+01",
            "tile/entries/0",
            "tile/entries/x000/000",
            "tile/entries/000.p/0",
            "tile/entries/000.p/256",
            "tile/8/0/0",
            "tile/8/00/000",
            "tile/8/0/000.p/0",
            "tile/data/000",
        ]
        for path in bad:
            status, _, _ = self.http.get(path)
            if status == 200:
                fail("non-canonical path %s answered 200", path)
        # Tiles that need more leaves than the checkpoint has: (path, leaves needed).
        m = size >> 8  # level-0 index of the first tile that is not full
        w = size % TILE_WIDTH
        top = max((t[0] for t in tiles), default=-1) + 1
        beyond = [
            (tile_path(0, m, w + 1), m * TILE_WIDTH + w + 1) if w < TILE_WIDTH - 1 else None,
            (tile_path("entries", m, w + 1), m * TILE_WIDTH + w + 1) if w < TILE_WIDTH - 1 else None,
            (tile_path(0, m, TILE_WIDTH), (m + 1) * TILE_WIDTH),
            (tile_path("entries", m, TILE_WIDTH), (m + 1) * TILE_WIDTH),
            (tile_path(0, m + 1, 1), (m + 1) * TILE_WIDTH + 1),
            (tile_path(0, m + 1, 1, go_alias=True), (m + 1) * TILE_WIDTH + 1),
            (tile_path(top, 0, 1), TILE_WIDTH**top),
        ]
        for item in filter(None, beyond):
            path, needed = item
            status, _, _ = self.http.get(path)
            if status == 200 and not self.grown_past(needed):
                fail("%s answered 200, but it needs %d leaves and the log has fewer", path, needed)
        return len(bad) + len([b for b in beyond if b])


# --- self test ------------------------------------------------------------------------------


def self_test():
    assert encode_index(0) == "000"
    assert encode_index(999) == "999"
    assert encode_index(1000) == "x001/000"
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(1000000) == "x001/x000/000"
    assert 315921200 >> 8 == 1234067
    assert tile_path(0, 1234067, 256) == "tile/0/x001/x234/067"
    assert tile_path(0, 1234067, 315921252 - 1234067 * 256) == "tile/0/x001/x234/067.p/100"
    assert tile_path(0, 1234067, 256, go_alias=True) == "tile/8/0/x001/x234/067"
    assert tile_path("entries", 1234067, 256) == "tile/entries/x001/x234/067"
    assert tiles_for_size(0) == []
    assert [tile_path(*t) for t in tiles_for_size(256)] == ["tile/0/000", "tile/1/000.p/1"]
    t70k = [tile_path(*t) for t in tiles_for_size(70000)]
    assert t70k[:2] == ["tile/0/000", "tile/0/001"] and t70k[272] == "tile/0/272"
    assert t70k[273:] == ["tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"], t70k[273:]
    assert len(t70k) == 277
    # The three-entry example: bundle, leaf hashes, root.
    three = [b"entry one", b"entry two", b"entry three"]
    bundle = bytes.fromhex("0009656e747279206f6e650009656e7472792074776f000b656e747279207468726565")
    assert b"".join(len(e).to_bytes(2, "big") + e for e in three) == bundle and len(bundle) == 35
    hashes = [leaf_hash(e) for e in three]
    assert hashes[0].hex().startswith("7bd61356e3269b4b")
    assert base64.b64encode(mth(hashes, 0, 3)).decode() == "2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw="
    # The example checkpoint verifies with the example log key.
    vkey = parse_vkey("example.com/behind-the-sofa+13e30ba2+ASmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X")
    note = (
        "example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n\n"
        + EM_DASH + " example.com/behind-the-sofa E+MLoo7Sh7opSZApJkLDm8y1veqJ4ITuCwjJ0RdhkXfMUJd7c8Y0AqFg"
        "inZfromQitPjsk5SJzCVsNGQKoTJ0VVt4gU=\n"
        + EM_DASH + " witness.example/w1 519lMgAAAABkGFDL6SQNTOyw7DrXj7sup7RyppJdAFetkctYUFOg8cI64WVR"
        "IzoXrYf6LTEYcQLbYCg4dqYLLi/fX7mRHFZdAuYzAA==\n"
    ).encode()
    size, root, _ = open_checkpoint(note, vkey, "example")
    assert size == 3 and root == mth(hashes, 0, 3)
    try:
        open_checkpoint(note.replace(b"\n3\n", b"\n4\n"), vkey, "tampered")
        raise AssertionError("a tampered checkpoint verified")
    except CheckFailed:
        pass
    print("tiles_check self-test: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="the log's tile prefix, e.g. http://127.0.0.1:8080/tlog")
    ap.add_argument("--vkey", help="the log's Ed25519 note vkey")
    ap.add_argument("--token", help="sent as `Authorization: Bearer TOKEN`")
    ap.add_argument("--old-checkpoint", help="an earlier signed checkpoint of the same log")
    ap.add_argument("--cafile", help="PEM CA bundle for https URLs")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--self-test", action="store_true", help="run the known-answer tests and exit")
    args = ap.parse_args()
    try:
        if args.self_test:
            self_test()
            return 0
        if not args.url or not args.vkey:
            ap.error("--url and --vkey are required")
        old_note = None
        if args.old_checkpoint:
            with open(args.old_checkpoint, "rb") as f:
                old_note = f.read()
        client = Client(args.url, args.token, args.cafile, args.timeout)
        print(json.dumps(Checker(client, parse_vkey(args.vkey)).run(old_note)))
        return 0
    except AssertionError as e:
        tb = e.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        sys.stderr.write("tiles_check: self-test failed at line %d %s\n" % (tb.tb_lineno, e))
        return 1
    except (CheckFailed, OSError) as e:
        sys.stderr.write("tiles_check: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
