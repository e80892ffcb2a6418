"""Tests of the actlog Python producer SDK, against a real `actlog serve`
(ACTLOG_BIN, default /var/tmp/actlog-target/debug/actlog) and small HTTP
stubs. Run from the repository root:

    python3 -m unittest discover -s clients/python/tests -v
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, SRC)
sys.path.insert(0, HERE)

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

from actlog_client import (Client, PAYLOAD_TYPE, Receipt, ServerError, Signer, Unavailable,  # noqa: E402
                           key_fingerprint, pae, public_key_b64)
from serverutil import ActlogServer, Stub, decision, free_port  # noqa: E402

SEED = bytes(range(32))


def spool_files(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".ndjson"))


class TempDirCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="actlog-client-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.spool = os.path.join(self.tmp, "spool")

    def client(self, url, **kw):
        kw.setdefault("token", "t")
        kw.setdefault("key", SEED)
        kw.setdefault("key_name", "pdp-a-key")
        c = Client(url, **kw)
        self.addCleanup(self._close_quietly, c)
        return c

    @staticmethod
    def _close_quietly(c):
        try:
            c.close(timeout=30)
        except Exception:
            pass


class ServerCase(TempDirCase):
    """A fresh server per test, with SEED registered as `pdp-a-key` for PDP `pdp-a`."""

    serve_args = ()

    def setUp(self):
        super().setUp()
        self.server = ActlogServer(*self.serve_args)
        self.addCleanup(self.server.stop)
        self.server.add_key("pdp-a-key", public_key_b64(SEED), "pdp-a")
        self.token = self.server.ingest_token()

    def client(self, url=None, **kw):
        kw.setdefault("token", self.token)
        return super().client(url or self.server.url, **kw)


class EnvelopeTest(unittest.TestCase):
    def test_envelope_shape_and_signature(self):
        signer = Signer(SEED, "pdp-a-key")
        ev = decision("evt-ü", reason="naïve ✓")
        env_bytes, event_id = signer.envelope(ev)
        self.assertEqual(event_id, "evt-ü")
        self.assertNotIn(b"\n", env_bytes)
        env = json.loads(env_bytes)
        self.assertEqual(list(env), ["payloadType", "payload", "signatures"])
        self.assertEqual(env["payloadType"], PAYLOAD_TYPE)
        body = base64.b64decode(env["payload"], validate=True)
        self.assertEqual(base64.b64encode(body).decode(), env["payload"])  # standard, padded
        self.assertEqual(body, json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode())
        self.assertEqual(len(env["signatures"]), 1)
        self.assertEqual(env["signatures"][0]["keyid"], "pdp-a-key")
        sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
        expected_pae = b"DSSEv1 36 application/vnd.actlog.event.v1+json %d " % len(body) + body
        self.assertEqual(pae(PAYLOAD_TYPE, body), expected_pae)
        Ed25519PublicKey.from_public_bytes(signer.public_key).verify(sig, expected_pae)  # raises if bad

    def test_defaults_and_key_forms(self):
        signer = Signer(SEED)
        self.assertEqual(signer.key_name, key_fingerprint(SEED))  # the fingerprint is a valid keyid
        env, event_id = signer.envelope({"event_type": "authz.decision"})
        ev = json.loads(base64.b64decode(json.loads(env)["payload"]))
        self.assertEqual(ev["event_id"], event_id)
        self.assertEqual(ev["spec_version"], "1")
        self.assertRegex(ev["event_time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        raw = json.dumps(decision("raw-1")).encode()  # pre-serialized JSON is signed as given
        env2, eid2 = signer.envelope(raw)
        self.assertEqual(eid2, "raw-1")
        self.assertEqual(base64.b64decode(json.loads(env2)["payload"]), raw)
        keyfile = "PRIVATE+KEY+pdp1+abcd1234+" + base64.b64encode(b"\x01" + SEED).decode()
        self.assertEqual(Signer(keyfile).key_name, "pdp1")
        self.assertEqual(Signer(keyfile).public_key, signer.public_key)
        with self.assertRaises(ValueError):
            Signer(b"short")


class IngestTest(ServerCase):
    def test_accepted_and_stored_as_sent(self):
        c = self.client(batch_size=256, number_events=True)
        events = [decision(f"acc-{i}", reason=f"ünïcode ✓ {i}") for i in range(5)]
        handle = c.record(events[0])
        c.record_many(events[1:])
        receipts = c.flush()
        self.assertEqual([r.event_id for r in receipts], [e["event_id"] for e in events])
        self.assertTrue(all(isinstance(r, Receipt) and not r.duplicate for r in receipts))
        seqs = [r.seq for r in receipts]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 5)
        self.assertEqual(handle.result(timeout=1), receipts[0])
        # Deterministic ed25519: the very bytes the client sent, which are the
        # event numbered in the client's stream.
        signer = Signer(SEED, "pdp-a-key", number_events=False)
        for i, (ev, r) in enumerate(zip(events, receipts)):
            stored = self.server.event(r.seq)
            ev = dict(ev, source={"stream": c.stream, "stream_seq": i})
            sent = json.loads(signer.envelope(ev)[0])
            self.assertEqual(stored["event_id"], ev["event_id"])
            self.assertEqual(stored["leaf_hash"], r.leaf_hash)
            self.assertEqual(stored["envelope"]["payload"], sent["payload"])
            self.assertEqual(stored["envelope"]["signatures"], sent["signatures"])
            self.assertEqual(stored["payload"], ev)
        self.assertEqual(c.flush(), [])  # nothing new since the last flush
        self.assertEqual(self.server.count(), 5)
        self.assertEqual(self.server.sql("SELECT stream, first_stream_seq, last_stream_seq, received, missing "
                                         "FROM producer_streams"), [[c.stream, 0, 4, 5, 0]])

    def test_events_are_numbered_unless_the_caller_numbers_them(self):
        signer = Signer(SEED, number_events=True)
        first = json.loads(base64.b64decode(json.loads(signer.envelope(decision("num-1"))[0])["payload"]))
        self.assertEqual(first["source"], {"stream": signer.stream, "stream_seq": 0})
        own = decision("num-2", source={"format": "gw", "stream": "mine", "stream_seq": 9})
        mine = json.loads(base64.b64decode(json.loads(signer.envelope(own)[0])["payload"]))
        self.assertEqual(mine["source"], own["source"])
        kept = decision("num-3", source={"format": "gw"})
        third = json.loads(base64.b64decode(json.loads(signer.envelope(kept)[0])["payload"]))
        self.assertEqual(third["source"], {"format": "gw", "stream": signer.stream, "stream_seq": 1})
        self.assertNotIn("stream", kept["source"])  # the caller's dict is not changed
        with self.assertRaises(ValueError):  # an event that does not serialize uses no number
            signer.envelope(decision("num-4", score=float("nan")))
        fourth = json.loads(base64.b64decode(json.loads(signer.envelope(decision("num-5"))[0])["payload"]))
        self.assertEqual(fourth["source"]["stream_seq"], 2)
        # The same event recorded again keeps its number: the same bytes.
        self.assertEqual(signer.envelope(decision("num-1")), signer.envelope(decision("num-1")))
        self.assertNotIn("source", json.loads(base64.b64decode(json.loads(
            Signer(SEED).envelope(decision("num-6"))[0])["payload"])))  # numbering is opt-in

    def test_gzip_batches_and_send(self):
        c = self.client(gzip=True, batch_size=100, spool_dir=self.spool)
        events = [decision(f"gz-{i}") for i in range(250)]  # 3 batches: 100, 100, 50
        receipts = c.send(events)
        self.assertEqual([r.event_id for r in receipts], [e["event_id"] for e in events])
        self.assertEqual(len({r.seq for r in receipts}), 250)
        self.assertEqual(self.server.count(), 250)
        self.assertEqual(spool_files(self.spool), [])  # deleted after the 200s
        self.assertEqual(c.flush(), [])  # send() results are not returned again

    def test_linger_sends_without_flush(self):
        c = self.client(linger_ms=50)
        h = c.record(decision("linger-1"))
        r = h.result(timeout=10)
        self.assertEqual(r.event_id, "linger-1")
        self.assertEqual(self.server.count(), 1)

    def test_resent_batch_is_all_duplicates(self):
        events = [decision(f"dup-{i}") for i in range(10)]
        first = self.client().send(events)
        again = self.client().send(events)  # a second producer, same events
        self.assertTrue(all(r.duplicate for r in again))
        self.assertFalse(any(r.duplicate for r in first))
        self.assertEqual([r.seq for r in again], [r.seq for r in first])
        self.assertEqual([r.leaf_hash for r in again], [r.leaf_hash for r in first])
        self.assertEqual(self.server.count(), 10)

    def test_unknown_key_refuses_whole_batch(self):
        other_seed = bytes(range(1, 33))  # never registered
        c = self.client(key=other_seed, spool_dir=self.spool)
        handles = c.record_many([decision(f"bad-{i}") for i in range(3)])
        with self.assertRaises(ServerError) as cm:
            c.flush()
        e = cm.exception
        self.assertEqual(e.status, 422)
        self.assertEqual(e.code, "invalid_batch")
        self.assertEqual(sorted(it.code for it in e.items), ["bad_signature"] * 3)
        self.assertIn(b"invalid_batch", e.body)
        for i, h in enumerate(handles):
            he = h.exception(timeout=1)
            self.assertIsInstance(he, ServerError)
            self.assertEqual(he.item.code, "bad_signature")
            self.assertEqual(he.item.index, i)
        # A PDP with no key at all: unknown_key.
        c2 = self.client(key=other_seed)
        with self.assertRaises(ServerError) as cm2:
            c2.send([decision("nokey-1", pdp="pdp-nokey")])
        self.assertEqual(cm2.exception.code, "invalid_batch")
        self.assertEqual(cm2.exception.item.code, "unknown_key")
        self.assertEqual(self.server.count(), 0)  # nothing stored
        self.assertEqual(spool_files(self.spool), [])  # the refused batch left the spool ...
        self.assertEqual(len(spool_files(os.path.join(self.spool, "rejected"))), 1)  # ... for rejected/

    def test_one_bad_event_does_not_sink_its_batch(self):
        c = self.client(spool_dir=self.spool, number_events=True)
        good1, bad, good2 = decision("mix-1"), decision("mix-2"), decision("mix-3")
        bad["decision"] = {"effect": "maybe"}
        h = c.record_many([good1, bad, good2])
        with self.assertRaises(ServerError) as cm:
            c.flush()
        self.assertEqual(cm.exception.item.code, "schema_violation")
        self.assertEqual(h[0].result(1).event_id, "mix-1")
        self.assertEqual(h[2].result(1).event_id, "mix-3")
        self.assertEqual(h[1].exception(1).item.index, 1)
        self.assertEqual(self.server.count(), 2)
        self.assertEqual(spool_files(self.spool), [])
        rejected = os.path.join(self.spool, "rejected")
        [name] = spool_files(rejected)
        with open(os.path.join(rejected, name), "rb") as f:
            [line] = f.read().splitlines()
        self.assertEqual(json.loads(base64.b64decode(json.loads(line)["payload"]))["event_id"], "mix-2")
        # The refused event is the one number missing from the client's stream.
        self.assertEqual(self.server.sql("SELECT stream, received, missing FROM producer_streams"),
                         [[c.stream, 2, 1]])
        self.assertIn('actlog_producer_sequence_gaps{pdp="pdp-a"} 1\n', self.server.metrics())


class OverloadTest(ServerCase):
    serve_args = ("--ingest-requests-max", "1")

    def test_concurrent_producers_all_stored(self):
        # With one ingest slot, concurrent producers meet 429 overloaded and retry.
        errors = []

        def produce(k):
            try:
                with Client(self.server.url, token=self.token, key=SEED, key_name="pdp-a-key",
                            batch_size=20, max_backoff_s=2) as c:
                    c.record_many([decision(f"ov-{k}-{i}") for i in range(100)])
                    c.flush()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(self.server.count(), 400)


class RetryTest(TempDirCase):
    def stub(self, *args, **kw):
        s = Stub(*args, **kw)
        self.addCleanup(s.stop)
        return s

    def check_waited_and_retried(self, status):
        err = json.dumps({"error": {"code": "overloaded", "message": "busy", "items": []}}).encode()
        stub = self.stub([("status", status, {"Retry-After": "1"}, err)])
        c = self.client(stub.url, max_retries=3, initial_backoff_s=0.01)
        receipts = c.send([decision("r-1"), decision("r-2")])
        self.assertEqual([r.event_id for r in receipts], ["r-1", "r-2"])
        self.assertEqual(len(stub.requests), 2)
        (t0, h0, b0), (t1, h1, b1) = stub.requests
        self.assertGreaterEqual(t1 - t0, 0.95)  # honoured Retry-After: 1
        self.assertEqual(b0, b1)  # the same bytes again
        self.assertEqual(h0["Authorization"], "Bearer t")
        self.assertEqual(h0["Content-Type"], "application/json")

    def test_429_retry_after(self):
        self.check_waited_and_retried(429)

    def test_503_retry_after(self):
        self.check_waited_and_retried(503)

    def test_503_without_retry_after_backs_off(self):
        stub = self.stub([("status", 503, {}, b"{}")] * 3)
        c = self.client(stub.url, max_retries=5, initial_backoff_s=0.05)
        self.assertEqual(len(c.send([decision("b-1")])), 1)
        times = [t for t, _, _ in stub.requests]
        self.assertEqual(len(times), 4)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertTrue(all(g >= 0.02 for g in gaps), gaps)  # 0.05, 0.1, 0.2 with jitter 0.5-1.0

    def test_400_not_retried(self):
        body = json.dumps({"error": {"code": "malformed_json", "message": "not JSON", "items": []}}).encode()
        stub = self.stub([("status", 400, {}, body)])
        c = self.client(stub.url, max_retries=5)
        with self.assertRaises(ServerError) as cm:
            c.send([decision("x-1")])
        self.assertEqual(cm.exception.status, 400)
        self.assertEqual(cm.exception.code, "malformed_json")
        self.assertEqual(cm.exception.message, "not JSON")
        self.assertEqual(len(stub.requests), 1)

    def test_dropped_connection_retried(self):
        stub = self.stub([("drop",)])
        c = self.client(stub.url, initial_backoff_s=0.01)
        self.assertEqual(c.send([decision("d-1")])[0].event_id, "d-1")
        self.assertEqual(len(stub.requests), 2)

    def test_retries_are_bounded(self):
        stub = self.stub(default=("status", 503, {}, b"{}"))
        c = self.client(stub.url, max_retries=2, initial_backoff_s=0.01, spool_dir=self.spool)
        h = c.record(decision("gone-1"))
        with self.assertRaises(Unavailable) as cm:
            c.flush()
        self.assertTrue(cm.exception.spooled)
        self.assertEqual(cm.exception.cause.status, 503)
        self.assertIs(h.exception(1), cm.exception)
        self.assertEqual(len(stub.requests), 3)
        self.assertEqual(c.backlog(), 1)
        self.assertEqual(len(spool_files(self.spool)), 1)

    def test_persist_spools_before_any_answer(self):
        stub = self.stub(default=("status", 503, {}, b"{}"))
        c = self.client(stub.url, spool_dir=self.spool, linger_ms=None, max_retries=0)
        c.record_many([decision(f"p-{i}") for i in range(3)])
        c.persist()  # returns once the batch is on disk, whatever the server says
        [name] = spool_files(self.spool)
        with open(os.path.join(self.spool, name), "rb") as f:
            lines = f.read().splitlines()
        self.assertEqual([json.loads(base64.b64decode(json.loads(x)["payload"]))["event_id"] for x in lines],
                         ["p-0", "p-1", "p-2"])
        with self.assertRaises(Unavailable):
            c.flush()
        self.assertEqual(spool_files(self.spool), [name])  # still there for a later attempt


CRASHING_PRODUCER = textwrap.dedent("""
    import os, sys
    sys.path[:0] = [{src!r}, {tests!r}]
    from actlog_client import Client, Unavailable
    from serverutil import decision
    c = Client({url!r}, token="t", key=bytes(range(32)), key_name="pdp-a-key", spool_dir={spool!r},
               batch_size=256, linger_ms=None, max_retries=1, initial_backoff_s=0.01)
    c.record_many([decision("crash-%d" % i) for i in range(300)])  # a full batch of 256 is spooled
    try:
        c.flush()  # spools the other 44; the server is unreachable
    except Unavailable as e:
        assert e.spooled, e
    else:
        raise SystemExit("flush did not fail")
    os._exit(0)  # a crash: no close(), no cleanup
""")


class SpoolTest(ServerCase):
    def test_crash_then_restart_resends_spool_first(self):
        dead = f"http://127.0.0.1:{free_port()}"
        script = CRASHING_PRODUCER.format(src=SRC, tests=HERE, url=dead, spool=self.spool)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        self.assertEqual(len(spool_files(self.spool)), 2)
        resent = []
        c = self.client(spool_dir=self.spool, on_resent=resent.extend)
        self.assertEqual(c.backlog(), 2)
        new = c.send([decision("after-restart")])
        self.assertEqual([r.event_id for r in resent], [f"crash-{i}" for i in range(300)])
        self.assertFalse(any(r.duplicate for r in resent))
        self.assertLess(max(r.seq for r in resent), new[0].seq)  # the spool went first
        self.assertEqual(spool_files(self.spool), [])
        self.assertEqual(c.backlog(), 0)
        self.assertEqual(self.server.count("event_id LIKE 'crash-%'"), 300)
        self.assertEqual(self.server.sql("SELECT count(DISTINCT event_id) FROM events "
                                         "WHERE event_id LIKE 'crash-%'")[0][0], 300)

    def test_lost_answers_stored_exactly_once(self):
        # The server stores every attempt but the answers never arrive.
        stub = Stub(default=("proxy_drop",), upstream=self.server.url)
        self.addCleanup(stub.stop)
        c1 = Client(stub.url, token=self.token, key=SEED, key_name="pdp-a-key", spool_dir=self.spool,
                    max_retries=1, initial_backoff_s=0.01)
        h = c1.record_many([decision(f"lost-{i}") for i in range(20)])
        with self.assertRaises(Unavailable):
            c1.flush()
        self.assertTrue(h[0].exception(1).spooled)
        c1.close()  # nothing new to flush; the batch stays spooled
        self.assertEqual(c1.backlog(), 1)
        self.assertGreaterEqual(len(stub.requests), 2)  # and maybe probes while "down"
        self.assertEqual(len(spool_files(self.spool)), 1)
        self.assertEqual(self.server.count(), 20)  # stored, though unacknowledged
        resent = []
        c2 = self.client(spool_dir=self.spool, on_resent=resent.extend)
        self.assertEqual(c2.flush(), [])
        self.assertEqual(len(resent), 20)
        self.assertTrue(all(r.duplicate for r in resent))
        self.assertEqual(spool_files(self.spool), [])
        self.assertEqual(self.server.count(), 20)

    def test_outage_in_process_then_recovery(self):
        # The server goes away behind a proxy and comes back; the client
        # catches up from its spool without a restart.
        stub = Stub(script=[("drop",)] * 4, default=("proxy",), upstream=self.server.url)
        self.addCleanup(stub.stop)
        resent = []
        c = self.client(stub.url, spool_dir=self.spool, max_retries=1, initial_backoff_s=0.05,
                        max_backoff_s=0.2, on_resent=resent.extend)
        with self.assertRaises(Unavailable):
            c.send([decision("out-1")])  # 2 drops
        with self.assertRaises(Unavailable):
            c.send([decision("out-2")])  # spooled at once while the server is "down"
        deadline = time.monotonic() + 20
        while c.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(c.backlog(), 0)
        self.assertEqual(sorted(r.event_id for r in resent), ["out-1", "out-2"])
        self.assertEqual(self.server.count(), 2)

    def test_spool_dir_is_exclusive(self):
        self.client(spool_dir=self.spool)
        with self.assertRaises(RuntimeError):
            Client(self.server.url, token=self.token, key=SEED, spool_dir=self.spool)


if __name__ == "__main__":
    unittest.main()
