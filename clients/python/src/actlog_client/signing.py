"""DSSE v1 envelopes for actlog events, signed with ed25519.

The rule is the one `actlog sign` follows (docs/formats.md, "Envelopes"):

    {"payloadType": "application/vnd.actlog.event.v1+json",
     "payload": "<standard base64, padded, of the event JSON bytes>",
     "signatures": [{"keyid": "<key name>", "sig": "<standard base64 ed25519 signature>"}]}

The signature covers PAE(type, body) = b"DSSEv1 " + len(type) + b" " + type
+ b" " + len(body) + b" " + body, lengths in ASCII decimal. The event is
serialized once and those exact bytes are signed and sent: actlog stores
the payload bytes as received.
"""
import base64
import collections
import datetime
import hashlib
import json
import threading
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PAYLOAD_TYPE = "application/vnd.actlog.event.v1+json"
_TYPE = PAYLOAD_TYPE.encode()
_PAE_PREFIX = b"DSSEv1 %d %s " % (len(_TYPE), _TYPE)
_b64 = base64.b64encode


def pae(payload_type, body):
    """DSSE's pre-authentication encoding of `body` (bytes) under `payload_type`."""
    t = payload_type.encode() if isinstance(payload_type, str) else payload_type
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def load_private_key(key):
    """(Ed25519PrivateKey, name or None) from a 32-byte seed, an
    `Ed25519PrivateKey`, or the text of an `actlog keygen` signer key file
    (`PRIVATE+KEY+<name>+<id>+<base64>`)."""
    if isinstance(key, Ed25519PrivateKey):
        return key, None
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if raw.startswith(b"PRIVATE+KEY+"):
            return load_private_key(raw.decode("ascii"))
        if len(raw) != 32:
            raise ValueError(f"an ed25519 seed is 32 bytes, got {len(raw)}")
        return Ed25519PrivateKey.from_private_bytes(raw), None
    if isinstance(key, str):
        text = key.strip()
        prefix = "PRIVATE+KEY+"
        if not text.startswith(prefix):
            raise ValueError("a str key must be the text of an actlog signer key (PRIVATE+KEY+...); "
                             "pass a 32-byte seed as bytes")
        try:
            name, _key_id, blob = text[len(prefix):].split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except ValueError as e:
            raise ValueError(f"malformed actlog signer key: {e}") from None
        if len(raw) != 33 or raw[0] != 1:
            raise ValueError("the actlog signer key is not an ed25519 key")
        return Ed25519PrivateKey.from_private_bytes(raw[1:]), name
    raise TypeError(f"key must be a 32-byte seed, an Ed25519PrivateKey or signer key text, not {type(key).__name__}")


def public_key_bytes(key):
    """The raw 32-byte public key of `key` (anything `load_private_key` takes)."""
    sk, _ = load_private_key(key)
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key):
    """Standard base64 of the raw public key: the value for
    `actlog keys add NAME --public-key ... --pdp PDP`."""
    return base64.b64encode(public_key_bytes(key)).decode("ascii")


def key_fingerprint(key):
    """Hex SHA-256 of the raw public key; actlog matches a `keyid` hint
    against a key's registered name or this."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()


def _now_rfc3339():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z"


# Event ids whose numbers a numbering Signer remembers (the most recent).
NUMBERED_IDS_MAX = 65536


class Signer:
    """Turns events into signed envelope bytes (compact JSON, one line)."""

    def __init__(self, key, key_name=None, fill_defaults=True, number_events=False):
        self._sk, file_name = load_private_key(key)
        self.public_key = self._sk.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw)
        self.fingerprint = hashlib.sha256(self.public_key).hexdigest()
        self.key_name = key_name or file_name or self.fingerprint
        self.fill_defaults = fill_defaults
        # Dict events are numbered in one stream per Signer: source.stream
        # and consecutive source.stream_seq, so the ledger can count the
        # events that never reached it (a number missing in between).
        self.stream = uuid.uuid4().hex if number_events else None
        self._next_seq = 0
        self._seq_lock = threading.Lock()
        # The numbers of recently numbered event ids: recording the same
        # event again gives the same bytes, so the ledger sees a duplicate
        # (a new number would make it a conflict).
        self._numbered = collections.OrderedDict()
        self._head = b'{"payloadType":"' + _TYPE + b'","payload":"'
        self._mid = b'","signatures":[{"keyid":' + json.dumps(self.key_name).encode() + b',"sig":"'
        self._tail = b'"}]}'

    def serialize(self, event):
        """(payload bytes, event_id) for a dict event, or for already
        serialized event JSON (bytes or str, signed as given)."""
        if isinstance(event, (bytes, bytearray, memoryview, str)):
            body = event.encode("utf-8") if isinstance(event, str) else bytes(event)
            try:
                event_id = json.loads(body)["event_id"]
            except (ValueError, KeyError, TypeError):
                raise ValueError("the event JSON has no event_id") from None
            return body, event_id
        if not isinstance(event, dict):
            raise TypeError(f"an event is a dict (or its JSON bytes), not {type(event).__name__}")
        if self.fill_defaults and ("event_id" not in event or "event_time" not in event
                                   or "spec_version" not in event):
            event = dict(event)
            event.setdefault("spec_version", "1")
            event.setdefault("event_id", str(uuid.uuid4()))
            event.setdefault("event_time", _now_rfc3339())
        source = event.get("source")
        if self.stream is None or not (source is None or isinstance(source, dict)) or "stream" in (source or {}):
            body = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
            return body, event.get("event_id")
        event = dict(event)
        event["source"] = dict(source or {}, stream=self.stream)
        event_id = event.get("event_id")
        with self._seq_lock:  # a number is used only once the event serializes: no false gap
            known = self._numbered.get(event_id) if isinstance(event_id, str) else None
            event["source"]["stream_seq"] = self._next_seq if known is None else known
            body = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
            if known is None:
                if isinstance(event_id, str):
                    self._numbered[event_id] = self._next_seq
                    if len(self._numbered) > NUMBERED_IDS_MAX:
                        self._numbered.popitem(last=False)
                self._next_seq += 1
        return body, event_id

    def envelope_for(self, body):
        """The signed DSSE envelope (bytes) of payload `body`."""
        sig = self._sk.sign(_PAE_PREFIX + b"%d " % len(body) + body)
        return self._head + _b64(body) + self._mid + _b64(sig) + self._tail

    def envelope(self, event):
        """(envelope bytes, event_id) of one event."""
        body, event_id = self.serialize(event)
        return self.envelope_for(body), event_id

    def envelope_dict(self, event):
        """The envelope as a dict, for callers that want to look at it."""
        return json.loads(self.envelope(event)[0])
