"""RFC 6962 Merkle hashing and proofs, RFC 9162 proof verification, and
C2SP key ids: the primitives shared by this directory's independent peers
(pylog.py, witness.py, tiles_check.py), written from the specs."""
import hashlib


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n):
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(hashes, lo=0, hi=None):
    """RFC 6962 MTH over leaf hashes[lo:hi]."""
    if hi is None:
        hi = len(hashes)
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[lo]
    k = split_point(n)
    return node_hash(mth(hashes, lo, lo + k), mth(hashes, lo + k, hi))


def audit_path(hashes, m, lo, hi):
    """RFC 6962 section 2.1.1 PATH(m, D[lo:hi]), leaf's sibling first."""
    n = hi - lo
    if n <= 1:
        return []
    k = split_point(n)
    if m < k:
        return audit_path(hashes, m, lo, lo + k) + [mth(hashes, lo + k, hi)]
    return audit_path(hashes, m - k, lo + k, hi) + [mth(hashes, lo, lo + k)]


def subproof(hashes, m, lo, hi, whole):
    """RFC 6962 section 2.1.2 SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if whole else [mth(hashes, lo, hi)]
    k = split_point(n)
    if m <= k:
        return subproof(hashes, m, lo, lo + k, whole) + [mth(hashes, lo + k, hi)]
    return subproof(hashes, m - k, lo + k, hi, False) + [mth(hashes, lo, lo + k)]


def verify_inclusion(index, size, leaf, root, path):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not (fn & 1 or fn == 0):
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 section 2.1.4.2, for 0 < first <= second."""
    if first <= 0 or first > second:
        return False
    if first == second:
        return not proof and first_hash == second_hash
    if not proof:
        return False
    path = ([first_hash] if first & (first - 1) == 0 else []) + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def key_id(name, type_byte, pub):
    return hashlib.sha256(name.encode() + b"\n" + bytes([type_byte]) + pub).digest()[:4]
