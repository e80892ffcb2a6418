#!/usr/bin/env python3
"""Independent verifier for actlog archives (`actlog serve --archive URL`).

Written from schema/archive.md (and docs/formats.md "Export bundles",
schema/leaf.md) alone, sharing no code with the Rust `actlog verify --archive`,
so a bug the Rust side repeats in its writer and its verifier shows up here.
Bundles are checked by tests/bundle_check.py, proofs by tests/tlog/rfc6962.py.

What it checks, in order (the first failure names the object key at fault):
  1. ranges/<first>-<end>/range.dsse.json: the records follow each other from
     seq 0 without a gap; each is a DSSE envelope (archive-range.v1) signed by
     --key, has exactly the specified fields and names its own range and key;
     `previous` names the record before (end_seq, tree_size, root_hash, SHA-256
     of its bytes); the RFC 6962 consistency proof joins the two checkpoints.
  2. every listed object exists with its size and SHA-256; a range lists exactly
     its bundle files at the keys of the layout table and exactly the full tiles
     whose last leaf is in [first, end).
  3. each range's bundle, rebuilt in a temporary directory, verifies with
     bundle_check.py and --key, and covers exactly [first, end) (events = end -
     first, from/to null, parquet) at the record's tree_size and root_hash.
  4. the leaves of all ranges in seq order (blake3-chained across ranges; the
     ledger records before a range equal the archived ones) rebuild every
     archived tile, and the root of every record the archive covers.
  5. --checkpoint FILE (C2SP signed note by --key): at a size the archive covers
     its root is the archived leaves' root; at the newest range's tree size, that
     range's root; past the end it cannot be checked offline (not a failure).
Objects under events/, delegation_hops/, tile/, ranges/ that no record lists are
counted and reported as left over, not as a failure.

Usage: python3 tests/archive_check.py ARCHIVE --key C2SP_VERIFIER_KEY
           [--s3-endpoint URL] [--checkpoint FILE]     (or: --self-test)
ARCHIVE: a directory, file:///PATH or s3://BUCKET/PREFIX (boto3, AWS_* env).
Exit 0 and one `ok:` line when intact, 1 with a message when not, 2 on bad use.
Needs: blake3, cryptography, duckdb, jsonschema (and boto3 for s3://).
"""
import argparse, hashlib, json, os, re, shutil, sys, tempfile  # noqa: E401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "tlog")]
import bundle_check as bc  # noqa: E402  (exits 2 itself when a package is missing)
import rfc6962  # noqa: E402
from bundle_check import Bad, need  # noqa: E402
import blake3, duckdb  # noqa: E401,E402

RANGE_TYPE = "application/vnd.actlog.archive-range.v1+json"
RECORD = "range.dsse.json"
BUNDLE_NAMES = ("manifest.json", "manifest.dsse.json", "checkpoint.txt", "leaves.parquet")
RECORD_RE = re.compile(r"ranges/(\d{20})-(\d{20})/range\.dsse\.json")
DATA_RE = re.compile(r"(events|delegation_hops)/(date=\d{4}-\d{2}-\d{2})/(part-\d{5}\.parquet)")
RECORD_FIELDS = {"format", "origin", "verifier_key", "first_seq", "end_seq", "tree_size", "root_hash",
                 "previous", "consistency", "objects"}
PREVIOUS_FIELDS = {"end_seq", "tree_size", "root_hash", "record_sha256"}
OBJECT_FIELDS = {"key", "kind", "bundle_path", "sha256", "bytes"}
LEFTOVER_PREFIXES = ("events/", "delegation_hops/", "tile/", "ranges/")
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
TILE_BYTES = 256 * 32


# ---- storage: a local directory or an S3 prefix, keys relative to the archive root

class LocalStore:
    def __init__(self, root):
        self.root = root

    def list(self, prefix):
        for dirpath, _, files in os.walk(os.path.join(self.root, prefix)):
            for f in files:
                yield os.path.relpath(os.path.join(dirpath, f), self.root).replace(os.sep, "/")

    def get(self, key):
        try:
            with open(os.path.join(self.root, key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None


class S3Store:
    def __init__(self, bucket, prefix, endpoint):
        import boto3
        self.s3, self.bucket = boto3.client("s3", endpoint_url=endpoint), bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list(self, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):]

    def get(self, key):
        from botocore.exceptions import ClientError
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise


# ---- small helpers

def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def b64_any(s, what):
    """DSSE base64: standard or URL-safe, padded or not."""
    need(isinstance(s, str), f"{what}: not a base64 string")
    t = s.replace("-", "+").replace("_", "/")
    return bc.b64d(t + "=" * (-len(t) % 4), what)


def hash32(s, what):
    h = bc.b64d(s, what)
    need(len(h) == 32, f"{what}: {len(h)} bytes, not a 32-byte hash")
    return h


def json_strict(raw, what):
    def pairs(kv):
        d = {}
        for k, v in kv:
            need(k not in d, f"{what}: member {k!r} appears twice")
            d[k] = v
        return d
    try:
        return json.loads(raw, object_pairs_hook=pairs)
    except ValueError as e:
        raise Bad(f"{what}: not JSON: {e}")


def exact_fields(obj, required, allowed, what):
    need(isinstance(obj, dict), f"{what}: not a JSON object")
    unknown, missing = sorted(set(obj) - allowed), sorted(required - set(obj))
    need(not unknown, f"{what}: unknown field {unknown[0] if unknown else ''!r}")
    need(not missing, f"{what}: missing field {missing[0] if missing else ''!r}")


def tile_key(level, n):
    """C2SP tlog-tiles path of a full tile: tile/0/x001/234."""
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return f"tile/{level}/" + "/".join(reversed(parts))


def expected_tiles(first, end):
    """(L, N) of every full tile whose last leaf (N + 1) * 256^(L+1) - 1 is in [first, end)."""
    out, level = [], 0
    while 256 ** (level + 1) <= end:
        width = 256 ** (level + 1)
        out += [(level, n) for n in range(first // width, end // width)]
        level += 1
    return out


def bundle_key(path, tag):
    """Archive key of a bundle file (the layout table), None for a path the layout has no place for."""
    if path in BUNDLE_NAMES:
        return f"ranges/{tag}/{path}"
    m = DATA_RE.fullmatch(path) if isinstance(path, str) else None
    return f"{m[1]}/{m[2]}/{tag}-{m[3]}" if m else None


class Tree:
    """RFC 6962 tree fed leaf hashes in order: the compact range of perfect subtrees, the roots
    at the wanted sizes, and each full tile (256 node hashes of tree level 8L) as it completes."""

    def __init__(self, wanted=()):
        self.size, self.stack, self.wanted, self.roots = 0, [], set(wanted), {}
        self.open_tiles, self.done = {}, []
        self._note()

    def root(self):
        if not self.stack:
            return hashlib.sha256(b"").digest()
        r = self.stack[-1][1]
        for _, h in reversed(self.stack[:-1]):
            r = rfc6962.node_hash(h, r)
        return r

    def _note(self):
        self.roots.update({self.size: self.root()} if self.size in self.wanted else {})

    def _tile_node(self, level, index, h):
        buf = self.open_tiles.setdefault(level, [])
        assert len(buf) == index % 256, "tile nodes out of order"
        buf.append(h)
        if len(buf) == 256:
            self.done.append((level, index // 256, b"".join(buf)))
            buf.clear()

    def add(self, leaf_hash):
        height, index, h = 0, self.size, leaf_hash
        self._tile_node(0, index, h)
        while self.stack and self.stack[-1][0] == height:
            h = rfc6962.node_hash(self.stack.pop()[1], h)
            height, index = height + 1, index >> 1
            if height % 8 == 0:
                self._tile_node(height // 8, index, h)
        self.stack.append((height, h))
        self.size += 1
        self._note()

    def take_tiles(self):
        out, self.done = self.done, []
        return out  # (level, index, 8 KiB of hashes) of each tile completed since the last call


# ---- 1. the range records

def check_record(key, raw, vkey, name, pub):
    env = json_strict(raw, key)
    need(isinstance(env, dict) and env.get("payloadType") == RANGE_TYPE,
         f"{key}: payloadType is not {RANGE_TYPE}")
    body = b64_any(env.get("payload"), f"{key}: payload")
    sigs = env.get("signatures")
    need(isinstance(sigs, list) and sigs, f"{key}: no signatures")
    pae = bc.pae(RANGE_TYPE, body)
    need(any(isinstance(s, dict) and bc.ed25519_ok(pub, b64_any(s.get("sig"), f"{key}: sig"), pae) for s in sigs),
         f"{key}: no signature verifies with the given key")
    rec = json_strict(body, f"{key}: payload")
    exact_fields(rec, RECORD_FIELDS, RECORD_FIELDS, f"{key}: payload")
    need(rec["format"] == "actlog.archive.v1", f"{key}: format {rec['format']!r}")
    need(rec["origin"] == name, f"{key}: origin {rec['origin']!r} is not the key's name {name!r}")
    need(rec["verifier_key"] == vkey, f"{key}: verifier_key {rec['verifier_key']!r} is not the given key")
    for f in ("first_seq", "end_seq", "tree_size"):
        need(is_uint(rec[f]), f"{key}: {f} is not an unsigned integer")
    need(rec["first_seq"] < rec["end_seq"] <= rec["tree_size"],
         f"{key}: needs first_seq < end_seq <= tree_size, has {rec['first_seq']}, {rec['end_seq']}, {rec['tree_size']}")
    rec["root"] = hash32(rec["root_hash"], f"{key}: root_hash")
    need(isinstance(rec["consistency"], list), f"{key}: consistency is not a list")
    rec["proof"] = [hash32(h, f"{key}: consistency") for h in rec["consistency"]]
    need(isinstance(rec["objects"], list), f"{key}: objects is not a list")
    for i, o in enumerate(rec["objects"]):
        what = f"{key}: objects[{i}]"
        kind = o.get("kind") if isinstance(o, dict) else None
        need(kind in ("bundle", "tile"), f"{what}: kind {kind!r} is neither bundle nor tile")
        required = OBJECT_FIELDS if kind == "bundle" else OBJECT_FIELDS - {"bundle_path"}
        exact_fields(o, required, OBJECT_FIELDS, what)
        need(kind == "bundle" or o.get("bundle_path") is None, f"{what}: a tile has a bundle_path")
        need(isinstance(o["key"], str), f"{what}: key is not a string")
        need(isinstance(o["sha256"], str) and HEX64.fullmatch(o["sha256"]), f"{what}: sha256 is not 64 hex digits")
        need(is_uint(o["bytes"]), f"{what}: bytes is not an unsigned integer")
    return rec


def check_link(key, rec, prev, prev_raw):
    p = rec["previous"]
    if prev is None:
        need(p is None, f"{key}: the range at seq 0 has a previous range")
        need(not rec["proof"], f"{key}: consistency proof without a previous range")
        return
    need(p is not None, f"{key}: previous is null but the range starts at {rec['first_seq']}")
    exact_fields(p, PREVIOUS_FIELDS, PREVIOUS_FIELDS, f"{key}: previous")
    need(p["end_seq"] == prev["end_seq"] == rec["first_seq"], f"{key}: previous.end_seq {p['end_seq']!r} "
         f"is not the end {prev['end_seq']} of the range before")
    need(p["tree_size"] == prev["tree_size"], f"{key}: previous.tree_size {p['tree_size']!r} != {prev['tree_size']}")
    need(hash32(p["root_hash"], f"{key}: previous.root_hash") == prev["root"], f"{key}: previous.root_hash differs")
    want = hashlib.sha256(prev_raw).hexdigest()
    need(isinstance(p["record_sha256"], str) and p["record_sha256"].lower() == want,
         f"{key}: previous.record_sha256 is not the SHA-256 of the record before ({want})")
    old, new = prev["tree_size"], rec["tree_size"]
    need(old <= new, f"{key}: tree_size {new} is below the previous range's {old}")
    need(rfc6962.verify_consistency(old, new, prev["root"], rec["root"], rec["proof"]),
         f"{key}: consistency proof from tree size {old} to {new} does not verify")


def load_records(store, vkey, name, pub):
    keys = sorted(k for k in store.list("ranges/") if k.count("/") == 2 and k.endswith("/" + RECORD))
    recs, prev, prev_raw = [], None, None
    for key in keys:
        m = RECORD_RE.fullmatch(key)
        need(m, f"{key}: not named ranges/<20-digit first>-<20-digit end>/{RECORD}")
        raw = store.get(key)
        need(raw is not None, f"{key}: listed but cannot be read")
        rec = check_record(key, raw, vkey, name, pub)
        need((rec["first_seq"], rec["end_seq"]) == (int(m[1]), int(m[2])),
             f"{key}: record names range {rec['first_seq']}-{rec['end_seq']}")
        expect = prev["end_seq"] if prev else 0
        need(rec["first_seq"] == expect, f"{key}: range starts at {rec['first_seq']}, the archive needs {expect} next")
        check_link(key, rec, prev, prev_raw)
        rec["record_key"] = key
        recs.append(rec)
        prev, prev_raw = rec, raw
    return recs


# ---- 2-4. each range's objects, bundle, leaves and tiles

def check_range(store, rec, vkey, name, tree, state, tmp, seen):
    key, first, end = rec["record_key"], rec["first_seq"], rec["end_seq"]
    tag = f"{first:020d}-{end:020d}"
    want_tiles = {tile_key(level, n) for level, n in expected_tiles(first, end)}
    paths, listed_tiles = {}, set()
    for o in rec["objects"]:
        k = o["key"]
        need(k not in seen, f"{k}: listed twice (again in {key})")
        seen.add(k)
        if o["kind"] == "bundle":
            bp = o["bundle_path"]
            want = bundle_key(bp, tag)
            need(want is not None, f"{k}: bundle_path {bp!r} is not a file an archived bundle has (in {key})")
            need(k == want, f"{k}: bundle file {bp} belongs at {want} (in {key})")
            paths[bp] = k
        else:
            need(k in want_tiles, f"{k}: listed by {key}, but range {tag} does not complete that tile")
            listed_tiles.add(k)
    for n in BUNDLE_NAMES:
        need(n in paths, f"ranges/{tag}/{n}: not listed in {key}")
    for t in sorted(want_tiles - listed_tiles):
        raise Bad(f"{t}: range {tag} completes this tile but {key} does not list it")

    bdir, tiles, nbytes = os.path.join(tmp, tag), {}, 0
    for o in rec["objects"]:  # 2. exists, size, sha256
        k = o["key"]
        data = store.get(k)
        need(data is not None, f"{k}: listed in {key} but missing")
        need(len(data) == o["bytes"], f"{k}: {len(data)} bytes, {key} says {o['bytes']}")
        got, nbytes = hashlib.sha256(data).hexdigest(), nbytes + len(data)
        need(got == o["sha256"].lower(), f"{k}: sha256 {got}, {key} says {o['sha256']}")
        if o["kind"] == "tile":
            tiles[k] = data
            continue
        path = os.path.join(bdir, *o["bundle_path"].split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    mkey, lkey = paths["manifest.json"], paths["leaves.parquet"]
    try:  # 3. the bundle
        bc.verify(bdir, vkey)
    except Bad as e:
        head, _, rest = str(e).partition(": ")
        at = paths.get(head) or bundle_key(head, tag)
        raise Bad(f"{at}: {rest} (bundle of {key})" if at else f"{key}: bundle does not verify: {e}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, duckdb.Error) as e:
        raise Bad(f"{mkey}: bundle cannot be read: {type(e).__name__}: {e}")
    with open(os.path.join(bdir, "manifest.json"), "rb") as f:
        m = json.load(f)
    want = {"format": "actlog.export.v1", "data_format": "parquet", "origin": name, "verifier_key": vkey,
            "first_seq": first, "last_seq": end - 1, "events": end - first, "from": None, "to": None,
            "tree_size": rec["tree_size"]}
    for field, v in want.items():
        need(field in m and m[field] == v, f"{mkey}: {field} is {m.get(field, 'missing')!r}, range {tag} needs {v!r}")
    need(hash32(m.get("root_hash"), f"{mkey}: root_hash") == rec["root"], f"{mkey}: root_hash is not the one of {key}")

    # 4. leaves in seq order, then the tiles they complete
    rows = duckdb.connect().execute("select seq, leaf from read_parquet(?) order by seq",
                                    [os.path.join(bdir, "leaves.parquet")]).fetchall()
    expect, before = first, set()
    for seq, leaf in rows:
        leaf = bytes(leaf)
        if seq < first:
            need(leaf[1:2] == b"\x03" and state["ledger"].get(seq) == leaf,
                 f"{lkey}: seq {seq} (before the range) is not the archived ledger record at that seq")
            before.add(seq)
            continue
        need(seq == expect and seq < end, f"{lkey}: seq {seq} where the range needs {expect if expect < end else 'none'}")
        if seq == first and first > 0:
            need(leaf[114:146] == state["chain"], f"{lkey}: seq {seq}: previous chain hash does not follow the range before")
        state["chain"] = blake3.blake3(leaf[114:146] + leaf).digest()
        if leaf[1] == 3:
            state["ledger"][seq] = leaf
        tree.add(rfc6962.leaf_hash(leaf))
        expect += 1
    need(expect == end, f"{lkey}: leaves stop before seq {expect}, the range ends at {end}")
    gone = sorted(s for s in state["ledger"] if s < first and s not in before)
    need(not gone, f"{lkey}: the ledger record at seq {gone[0] if gone else 0} (before the range) is missing")
    done = {tile_key(level, n): data for level, n, data in tree.take_tiles()}
    need(set(done) == want_tiles, f"{key}: internal error: rebuilt tiles differ from the expected set")
    for k, data in sorted(done.items()):
        need(len(tiles[k]) == TILE_BYTES, f"{k}: {len(tiles[k])} bytes, a full tile has {TILE_BYTES}")
        need(tiles[k] == data, f"{k}: tile hashes are not the ones rebuilt from the leaves")
    shutil.rmtree(bdir)
    return len(rec["objects"]), nbytes, len(done)


# ---- the whole archive

def open_store(url, endpoint):
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            print(f"no bucket in {url}", file=sys.stderr)
            raise SystemExit(2)
        return S3Store(bucket, prefix, endpoint)
    path = url[7:] if url.startswith("file://") else url
    if "://" in path or not os.path.isdir(path):
        print(f"not an archive directory, file:///PATH or s3://BUCKET/PREFIX: {url}", file=sys.stderr)
        raise SystemExit(2)
    return LocalStore(path)


def read_checkpoint(path, name, key_id, pub):
    with open(path, "rb") as f:
        text = f.read().decode()
    try:
        body = bc.check_note(text, name, key_id, pub)
    except Bad as e:
        raise Bad(f"{path}: {str(e).replace(bc.CHECKPOINT + ': ', '')}")
    need(len(body) == 3 and body[0] == name and re.fullmatch(r"0|[1-9][0-9]*", body[1]),
         f"{path}: not a checkpoint of {name} (origin, tree size, root)")
    return int(body[1]), hash32(body[2], f"{path}: root")


def verify(store, vkey, checkpoint):
    try:
        name, key_id, pub = bc.parse_verifier_key(vkey)
    except Bad as e:
        print(f"bad --key: {str(e).replace(bc.MANIFEST + ': ', '')}", file=sys.stderr)
        raise SystemExit(2)
    cp = read_checkpoint(checkpoint, name, key_id, pub) if checkpoint else None
    recs = load_records(store, vkey, name, pub)  # 1.
    need(recs, "the archive holds no range record: nothing is archived there")
    end = recs[-1]["end_seq"] if recs else 0
    tree = Tree([r["tree_size"] for r in recs] + ([cp[0]] if cp else []))
    state, seen, nobj, nbytes, ntiles = {"chain": bytes(32), "ledger": {}}, set(), 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="archive_check.") as tmp:
        for rec in recs:  # 2.-4.
            o, b, t = check_range(store, rec, vkey, name, tree, state, tmp, seen)
            nobj, nbytes, ntiles = nobj + o, nbytes + b, ntiles + t
    for rec in recs:
        if rec["tree_size"] <= end:
            need(tree.roots[rec["tree_size"]] == rec["root"],
                 f"{rec['record_key']}: root_hash is not the root of the archived leaves at {rec['tree_size']}")
    note = "no --checkpoint"
    if cp:  # 5.
        size, root = cp
        if size <= end:
            need(tree.roots[size] == root, f"{checkpoint}: root at size {size} is not the root of the archived leaves")
            note = f"checkpoint at {size} matches the archived leaves"
        if recs and size == recs[-1]["tree_size"]:
            need(root == recs[-1]["root"], f"{checkpoint}: root differs from {recs[-1]['record_key']} at size {size}")
            note = f"checkpoint at {size} matches the newest range's checkpoint"
        elif size > end:
            note = (f"checkpoint at {size} is past the archive's end {end}: cannot be checked offline "
                    "(compare with `actlog prove consistency` on the ledger)")
    records = {r["record_key"] for r in recs}
    left = sorted(k for p in LEFTOVER_PREFIXES for k in store.list(p) if k not in seen and k not in records)
    print("".join(f"left over: {k}\n" for k in left[:20]), end="", file=sys.stderr)
    return (f"ok: {len(recs)} ranges, end seq {end}, {nobj} objects ({nbytes} bytes), {ntiles} tiles checked, "
            f"{len(left)} left over; {note}; key {name}+{key_id.hex()} (independent check)")


# ---- self-test of the tree, tile and proof helpers against brute force

def self_test():
    def brute_root(hs):  # MTH from the definition: split at the largest power of two below n
        if len(hs) <= 1:
            return hs[0] if hs else hashlib.sha256(b"").digest()
        k = 1
        while k * 2 < len(hs):
            k *= 2
        return rfc6962.node_hash(brute_root(hs[:k]), brute_root(hs[k:]))

    assert tile_key(0, 1234) == "tile/0/x001/234" and tile_key(0, 0) == "tile/0/000"
    assert tile_key(1, 1234067) == "tile/1/x001/x234/067" and tile_key(2, 1000) == "tile/2/x001/000"
    assert expected_tiles(0, 255) == [] and expected_tiles(255, 256) == [(0, 0)]
    assert expected_tiles(0, 65536) == [(0, n) for n in range(256)] + [(1, 0)]
    assert expected_tiles(65536, 131072) == [(0, n) for n in range(256, 512)] + [(1, 1)]
    assert bundle_key("events/date=2024-01-02/part-00000.parquet", "a-b") == "events/date=2024-01-02/a-b-part-00000.parquet"
    assert bundle_key("events/date=2024-01-02/../x", "a-b") is None

    n = 65536 + 777
    leaves = [rfc6962.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    sizes = [0, 1, 2, 3, 255, 256, 257, 1000, 65535, 65536, n]
    tree, cuts, got = Tree(sizes), [0, 1, 1000, 65000, 65536, 65536 + 300, n], {}
    for first, end in zip(cuts, cuts[1:]):
        for h in leaves[first:end]:
            tree.add(h)
        done = tree.take_tiles()
        assert [(lv, i) for lv, i, _ in done] == expected_tiles(first, end), (first, end)
        got.update({(lv, i): data for lv, i, data in done})
    assert len(got) == 256 * 1 + 1 + 3  # level-0 tiles 0..258, the level-1 tile 0
    for (level, idx), data in got.items():
        span = 256 ** level
        want = b"".join(brute_root(leaves[(idx * 256 + j) * span:(idx * 256 + j + 1) * span]) for j in range(256))
        assert data == want, (level, idx)
    for s in sizes:
        assert tree.roots[s] == brute_root(leaves[:s]), s

    small = leaves[:70]
    roots = [brute_root(small[:s]) for s in range(71)]
    for old in range(1, 71):
        for new in range(old, 71):
            proof = rfc6962.subproof(small, old, 0, new, True)
            assert rfc6962.verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
            if proof:
                bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
                assert not rfc6962.verify_consistency(old, new, roots[old], roots[new], bad)
                assert not rfc6962.verify_consistency(old, new, roots[old], roots[new - 1], proof)
            if new > old:
                assert not rfc6962.verify_consistency(old, new, roots[old - 1] if old > 1 else roots[2], roots[new], proof)
    return "self-test ok: tile keys and sets, streamed tiles and roots vs brute force, consistency proofs 1..70"


def main():
    ap = argparse.ArgumentParser(description="Independently verify an actlog archive.")
    ap.add_argument("archive", nargs="?", help="directory, file:///PATH or s3://BUCKET/PREFIX")
    ap.add_argument("--key", help="the ledger's C2SP verifier key (trusted)")
    ap.add_argument("--s3-endpoint", help="S3 endpoint URL (credentials from AWS_* variables)")
    ap.add_argument("--checkpoint", help="a checkpoint (C2SP signed note) kept outside the archive")
    ap.add_argument("--self-test", action="store_true", help="test the tree, tile and proof helpers")
    args = ap.parse_args()
    if args.self_test:
        print(self_test())
        return
    if not args.archive or not args.key:
        ap.error("ARCHIVE and --key are required")
    store = open_store(args.archive, args.s3_endpoint)
    errors = (OSError, ValueError, KeyError, TypeError, AttributeError, duckdb.Error)
    if isinstance(store, S3Store):
        from botocore.exceptions import BotoCoreError, ClientError
        errors += (BotoCoreError, ClientError)
    try:
        print(verify(store, args.key, args.checkpoint))
    except Bad as e:
        print(f"FAIL {args.archive}: {e}", file=sys.stderr)
        sys.exit(1)
    except errors as e:
        print(f"FAIL {args.archive}: cannot read the archive: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
