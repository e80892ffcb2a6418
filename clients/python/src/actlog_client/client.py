"""The batching, retrying, spooling producer client."""
import collections
import gzip as gzip_module
import http.client
import json
import random
import threading
import time
from dataclasses import dataclass

from .errors import ActlogError, ClientClosed, ServerError, SpoolError, Unavailable
from .signing import Signer
from .spool import Spool
from .transport import Transport

# Answers after which the same request is tried again.
RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
# Answers that blame the request's content: retrying cannot help, so the
# batch leaves the spool for rejected/. Any other refusal (401, 403, 404,
# 500, 507, ...) is about the server or the credentials: the batch stays
# spooled for a later attempt.
CONTENT_FAULT_STATUS = frozenset({400, 409, 413, 415, 422})


@dataclass(frozen=True)
class Receipt:
    """The server's acknowledgement of one event."""

    event_id: str
    seq: int
    leaf_hash: str
    duplicate: bool

    @classmethod
    def from_json(cls, r):
        return cls(r["event_id"], int(r["seq"]), r["leaf_hash"], bool(r.get("duplicate", False)))


class _Batch:
    __slots__ = ("envelopes", "futures", "path", "done")

    def __init__(self, envelopes, futures, path, done=None):
        self.envelopes = envelopes
        self.futures = futures  # the handles; None for a batch found in the spool
        self.path = path
        self.done = done  # the handles' shared Event, set once all are settled


class _Barrier:
    """flush(): set by the sender once every earlier batch is settled."""

    __slots__ = ("done", "errors")

    def __init__(self):
        self.done = threading.Event()
        self.errors = []


class _SpoolBarrier(_Barrier):
    """persist(): set by the spooler once every earlier batch is on disk."""


class Handle:
    """What record() returns: a future-like handle of the event's `Receipt`.

    result(timeout=None) waits for the batch's answer and returns the
    Receipt or raises the event's error (an ActlogError); exception(timeout)
    returns that error or None; done() says whether it is settled. The
    events of one batch share a single Event, so a handle costs little."""

    __slots__ = ("event_id", "_done", "_receipt", "_error")

    def __init__(self, event_id, done):
        self.event_id = event_id
        self._done = done
        self._receipt = None
        self._error = None

    def done(self):
        return self._done.is_set()

    def _wait(self, timeout):
        if not self._done.wait(timeout):
            raise TimeoutError(f"no answer yet for event {self.event_id!r}")

    def result(self, timeout=None):
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._receipt

    def exception(self, timeout=None):
        self._wait(timeout)
        return self._error

    def __repr__(self):
        state = "pending" if not self.done() else ("failed" if self._error else "ok")
        return f"<Handle {self.event_id!r} {state}>"


def _resolve(h, result=None, error=None):
    if h._receipt is None and h._error is None:
        if error is None:
            h._receipt = result
        else:
            h._error = error


class Client:
    """Signs, batches, spools and sends actlog events.

        c = Client("http://127.0.0.1:7340", token=TOKEN, key=SEED, key_name="pdp-a-key",
                   spool_dir="/var/lib/gw/actlog-spool")
        handle = c.record(event)        # handle.result() -> Receipt
        receipts = c.flush()            # every event recorded since the last flush, in order
        c.close()

    Thread-safe: any number of threads may call record()/record_many()/
    flush()/send(). Two background threads move the batches along, in
    order: the spooler writes each sealed batch to the spool directory
    (fsync), the sender posts spooled batches to the server. So record()
    never waits for a disk or the network (unless max_queued_batches
    batches are already waiting).
    """

    def __init__(self, url, *, token, key, key_name=None, spool_dir=None, batch_size=256, linger_ms=100,
                 gzip=False, timeout_s=30.0, max_retries=6, initial_backoff_s=0.25, max_backoff_s=10.0,
                 max_queued_batches=64, keep_receipts=True, fill_defaults=True, number_events=False,
                 on_resent=None, ssl_context=None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._signer = Signer(key, key_name, fill_defaults=fill_defaults, number_events=number_events)
        self._transport = Transport(url, token, timeout_s=timeout_s, ssl_context=ssl_context)
        self.batch_size = batch_size
        self.linger_s = None if linger_ms is None or linger_ms <= 0 else linger_ms / 1000.0
        self.gzip = gzip
        self.max_retries = max(0, max_retries)
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_queued_batches = max(1, max_queued_batches)
        self.keep_receipts = keep_receipts
        self.on_resent = on_resent
        self._spool = Spool(spool_dir) if spool_dir is not None else None

        self._cond = threading.Condition(threading.Lock())
        self._buf_env, self._buf_fut = [], []
        self._buf_done = threading.Event()
        self._buf_since = 0.0
        self._to_spool = collections.deque()  # sealed batches (and barriers) for the spooler
        self._queue = collections.deque()  # spooled batches (and barriers) for the sender
        self._since_flush = []
        self._errors_since_flush = []
        self._spool_errors = []
        self._closing = False
        self._closed = False
        # Sender state (the sender thread's own; read elsewhere only for stats).
        self._backlog = collections.deque(self._spool.pending() if self._spool else ())
        self._down_until = 0.0  # while set: the server failed us; new batches are spooled, not sent
        self._down_delay = 0.0
        self._last_error = None
        self._stats = collections.Counter(dict.fromkeys(  # every key up front: read from other threads
            ("requests", "retries", "http_seconds", "batches_acknowledged", "events_acknowledged",
             "duplicates", "events_refused", "events_not_delivered"), 0))
        self._spooler = None
        if self._spool is not None:
            self._spooler = threading.Thread(target=self._run_spooler, name="actlog-client-spooler", daemon=True)
            self._spooler.start()
        self._thread = threading.Thread(target=self._run, name="actlog-client-sender", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- API

    @property
    def key_name(self):
        return self._signer.key_name

    @property
    def public_key(self):
        """The raw 32-byte ed25519 public key to register with `actlog keys add`."""
        return self._signer.public_key

    @property
    def stream(self):
        """The name of this client's numbered stream (`source.stream` of the
        dict events it records), or None with number_events=False."""
        return self._signer.stream

    def record(self, event):
        """Signs `event` (a dict, or its JSON as bytes) and adds it to the
        current batch. Returns a `Handle` whose result() is its `Receipt`
        (or raises an `ActlogError`) once its batch is sent.
        The batch is sent when it holds `batch_size` events, after
        `linger_ms`, or at flush()/send()/close()."""
        env, event_id = self._signer.envelope(event)
        with self._cond:
            return self._append_locked(env, event_id, self.keep_receipts)

    def record_many(self, events, _track=True):
        """record() for each event, as one contiguous run; returns the handles in order."""
        signed = [self._signer.envelope(e) for e in events]
        track = _track and self.keep_receipts
        with self._cond:
            return [self._append_locked(env, event_id, track) for env, event_id in signed]

    def persist(self, timeout=None):
        """Seals the current partial batch and returns once every event
        recorded so far is in the spool (fsynced), without waiting for the
        server. Raises SpoolError if a batch could not be written since the
        last persist(). Without spool_dir it only seals the batch."""
        barrier = _SpoolBarrier()
        with self._cond:
            self._seal_locked()
            if self._spool is None:
                return
            self._to_spool.append(barrier)
            self._cond.notify_all()
        if not barrier.done.wait(timeout):
            raise TimeoutError("persist: the spool directory is slow")
        if barrier.errors:
            raise barrier.errors[0]

    def flush(self, timeout=None):
        """Sends everything recorded so far and waits for the answers.

        Returns the receipts of every event recorded since the previous
        flush() (or since the client was made), in recording order (an
        empty list with keep_receipts=False). Raises the first error if any
        of those events failed; the handles from record() tell which."""
        barrier = _Barrier()
        with self._cond:
            if self._closed:
                raise ClientClosed("the client is closed")
            self._seal_locked()
            self._enqueue_locked(barrier)
            futs, self._since_flush = self._since_flush, []
        if not barrier.done.wait(timeout):
            raise TimeoutError("flush: the server has not answered in time; the batches stay queued")
        for f in futs:
            e = f.exception()
            if e is not None:
                raise e
        if barrier.errors:
            raise barrier.errors[0]
        return [f.result() for f in futs]

    def send(self, events, timeout=None):
        """Records `events`, sends them now and returns their receipts in
        order (raises the first error)."""
        futs = self.record_many(events, _track=False)
        with self._cond:
            self._seal_locked()
        return [f.result(timeout) for f in futs]

    def backlog(self):
        """How many spooled batches wait to be re-sent (made by an earlier
        client, or failed here while the server was unavailable)."""
        return len(self._backlog)

    def stats(self):
        """Counters of the sender: requests, retries, events and batches
        acknowledged, duplicates, refused and spooled-for-later events, and
        http_seconds (time spent waiting for the server)."""
        return dict(self._stats)

    def close(self, timeout=None):
        """flush(), then stops the sender thread and releases the spool.
        Raises what flush() raises, after closing."""
        with self._cond:
            if self._closed or self._closing:
                return
            self._closing = True
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._spooler is not None:
                self._spooler.join(timeout)
            self._thread.join(timeout)
            self._transport.close()
            if self._spool is not None:
                self._spool.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except ActlogError:
                pass  # the original exception is the one to see

    # ------------------------------------------------------- batching

    def _append_locked(self, env, event_id, track):
        if self._closed or self._closing:
            raise ClientClosed("the client is closed")
        # Back-pressure while the server is slower than the producers (not
        # while it is down: then batches wait in the spool, not in memory).
        while len(self._to_spool) + len(self._queue) >= self.max_queued_batches and not self._closed:
            self._cond.wait()
        if not self._buf_env:
            self._buf_since = time.monotonic()
            if self.linger_s is not None:
                self._cond.notify_all()
        fut = Handle(event_id, self._buf_done)
        self._buf_env.append(env)
        self._buf_fut.append(fut)
        if track:
            self._since_flush.append(fut)
        if len(self._buf_env) >= self.batch_size:
            self._seal_locked()
        return fut

    def _seal_locked(self):
        """Turns the buffer into a batch, on its way to the spool (or, with
        no spool, straight to the sender)."""
        if not self._buf_env:
            return
        batch = _Batch(self._buf_env, self._buf_fut, None, self._buf_done)
        self._buf_env, self._buf_fut, self._buf_done = [], [], threading.Event()
        self._enqueue_locked(batch)

    def _enqueue_locked(self, item):
        (self._to_spool if self._spool is not None else self._queue).append(item)
        self._cond.notify_all()

    # ------------------------------------------------------- spooling

    def _linger_locked(self, now):
        """Seals the buffer once it is linger_ms old; returns how long until
        that is due (None: nothing to wait for). Runs in the spooler (never
        blocked by the network), or in the sender when there is no spool."""
        if not self._buf_env or self.linger_s is None:
            return None
        due = self._buf_since + self.linger_s - now
        if due > 0:
            return due
        self._seal_locked()
        return None

    def _run_spooler(self):
        while True:
            with self._cond:
                while True:
                    wait = self._linger_locked(time.monotonic())
                    if self._to_spool or self._closed:
                        break
                    self._cond.wait(wait)
                if not self._to_spool:
                    return
                item = self._to_spool.popleft()
            if isinstance(item, _SpoolBarrier):
                with self._cond:
                    item.errors, self._spool_errors = self._spool_errors, []
                item.done.set()
                continue
            if isinstance(item, _Batch):
                try:
                    item.path = self._spool.write(item.envelopes)
                except BaseException as e:  # OSError, mostly: a full or read-only disk
                    err = SpoolError(f"cannot write the batch to the spool, so it was not sent: {e!r}")
                    for f in item.futures:
                        _resolve(f, error=err)
                    item.done.set()
                    with self._cond:
                        self._errors_since_flush.append(err)
                        self._spool_errors.append(err)
                        self._cond.notify_all()
                    continue
            with self._cond:
                self._queue.append(item)
                self._cond.notify_all()

    # ------------------------------------------------------- sending

    def _run(self):
        while True:
            with self._cond:
                item = None
                while True:
                    now = time.monotonic()
                    wait = self._linger_locked(now) if self._spool is None else None
                    if self._queue:
                        item = self._queue.popleft()
                        self._cond.notify_all()  # room for a blocked producer
                        break
                    if self._closed:
                        return
                    if self._backlog and now >= self._down_until:
                        break  # re-send the backlog
                    if self._backlog:
                        d = self._down_until - now
                        wait = d if wait is None else min(wait, d)
                    self._cond.wait(wait)
            try:
                self._drain_backlog()
                if isinstance(item, _Barrier):
                    with self._cond:
                        item.errors, self._errors_since_flush = self._errors_since_flush, []
                    item.done.set()
                elif item is not None:
                    self._deliver(item)
                    item.done.set()
            except BaseException as e:  # a bug: never leave a caller waiting forever
                if isinstance(item, _Barrier):
                    item.done.set()
                elif item is not None and item.futures:
                    err = ActlogError(f"internal error in the sender: {e!r}")
                    for f in item.futures:
                        _resolve(f, error=err)
                    item.done.set()
                    self._note_error(err)

    def _is_down(self):
        return self._down_until and time.monotonic() < self._down_until

    def _set_down(self, err):
        self._last_error = err
        self._down_delay = min(self.max_backoff_s, max(self.initial_backoff_s, self._down_delay * 2))
        self._down_until = time.monotonic() + self._down_delay * random.uniform(0.5, 1.0)

    def _set_up(self):
        self._down_until = 0.0
        self._down_delay = 0.0

    def _note_error(self, err):
        with self._cond:
            self._errors_since_flush.append(err)

    def _drain_backlog(self):
        """Re-sends spooled batches, oldest first, while the server answers."""
        while self._backlog and not self._is_down():
            path = self._backlog[0]
            try:
                envs = Spool.read(path)
            except FileNotFoundError:
                self._backlog.popleft()
                continue
            if not envs:
                Spool.remove(path)
                self._backlog.popleft()
                continue
            if not self._deliver(_Batch(envs, None, path), from_backlog=True):
                return

    def _backoff(self, attempt):
        return min(self.max_backoff_s, self.initial_backoff_s * (2 ** attempt)) * random.uniform(0.5, 1.0)

    def _post(self, body, attempts):
        """POSTs one batch body, retrying what may be retried. Returns
        ("ok", receipts JSON) | ("refused", ServerError) | ("unavailable", error)."""
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        last = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(delay)
            self._stats["requests"] += 1
            if attempt:
                self._stats["retries"] += 1
            t0 = time.perf_counter()
            try:
                resp = self._transport.request("POST", "/v1/events", body, headers)
            except (OSError, http.client.HTTPException) as e:  # refused/reset, timeout, bad answer
                self._stats["http_seconds"] += time.perf_counter() - t0
                last = e
                delay = self._backoff(attempt)
                continue
            self._stats["http_seconds"] += time.perf_counter() - t0
            if resp.status == 200:
                try:
                    return "ok", json.loads(resp.body)["receipts"]
                except (ValueError, KeyError, TypeError) as e:
                    return "unavailable", Unavailable("unreadable 200 answer from actlog", cause=e)
            err = ServerError.from_response(resp.status, resp.body, resp.retry_after)
            if resp.status in RETRYABLE_STATUS:
                last = err
                delay = self._backoff(attempt)
                if resp.retry_after is not None:
                    # never sooner than the server asked, unless that is past max_backoff_s
                    delay = min(resp.retry_after * random.uniform(1.0, 1.1), max(self.max_backoff_s, delay))
                continue
            if resp.status in CONTENT_FAULT_STATUS:
                return "refused", err
            return "unavailable", err
        return "unavailable", Unavailable(f"actlog did not accept the batch in {attempts} attempt(s)", cause=last)

    def _deliver(self, batch, from_backlog=False):
        """Sends one batch and settles it. True when the batch is done with
        (acknowledged or refused), False when it stays spooled for later."""
        envs, futs, path = batch.envelopes, batch.futures, batch.path
        if self._is_down():
            # The server failed the last batch: keep this one spooled and
            # answer its callers now instead of making them wait.
            err = Unavailable("actlog is not answering; the batch " +
                              ("is spooled and will be re-sent" if path else "was dropped (no spool_dir)"),
                              cause=self._last_error, spooled=path is not None)
            self._strand(batch, err, from_backlog)
            return False
        while True:
            body = b"[" + b",".join(envs) + b"]"
            attempts = 1 if (from_backlog and self._down_delay) else 1 + self.max_retries
            outcome, value = self._post(body, attempts)
            if outcome == "ok":
                if len(value) != len(envs):
                    err = Unavailable(f"actlog answered {len(value)} receipts for {len(envs)} envelopes")
                    self._set_down(err)
                    self._strand(_Batch(envs, futs, path), err, from_backlog)
                    return False
                receipts = [Receipt.from_json(r) for r in value]
                self._stats["batches_acknowledged"] += 1
                self._stats["events_acknowledged"] += len(receipts)
                self._stats["duplicates"] += sum(r.duplicate for r in receipts)
                if path is not None:
                    Spool.remove(path)
                if from_backlog:
                    self._backlog.popleft()
                self._set_up()
                if futs is not None:
                    for f, r in zip(futs, receipts):
                        _resolve(f, r)
                elif self.on_resent is not None:
                    try:
                        self.on_resent(receipts)
                    except Exception:
                        pass
                return True
            if outcome == "refused":
                err = value
                self._set_up()  # the server answers; the fault is in the batch
                bad = sorted({it.index for it in err.items
                              if isinstance(it.index, int) and 0 <= it.index < len(envs)})
                if err.code in ("invalid_batch", "conflict") and bad and len(bad) < len(envs):
                    # Refuse only the named envelopes and send the rest again.
                    by_index = {}
                    for it in err.items:
                        by_index.setdefault(it.index, it)
                    bad_set = set(bad)
                    if self._spool is not None and path is not None:
                        self._spool.reject(path, [envs[i] for i in bad], err.body)
                        keep = [e for i, e in enumerate(envs) if i not in bad_set]
                        self._spool.rewrite(path, keep)
                    self._stats["events_refused"] += len(bad)
                    if futs is not None:
                        for i in bad:
                            _resolve(futs[i], error=err.for_item(by_index[i]))
                        self._note_error(err.for_item(by_index[bad[0]]))
                        futs = [f for i, f in enumerate(futs) if i not in bad_set]
                    envs = [e for i, e in enumerate(envs) if i not in bad_set]
                    continue
                if self._spool is not None and path is not None:
                    self._spool.reject(path, envs, err.body)
                    Spool.remove(path)
                if from_backlog:
                    self._backlog.popleft()
                self._stats["events_refused"] += len(envs)
                if futs is not None:
                    for i, f in enumerate(futs):
                        it = next((x for x in err.items if x.index == i), None)
                        _resolve(f, error=err.for_item(it) if it is not None else err)
                    self._note_error(err)
                return True
            # unavailable: keep it spooled, pause sending for a while
            err = value
            err.spooled = path is not None
            self._set_down(err)
            self._strand(_Batch(envs, futs, path), err, from_backlog)
            return False

    def _strand(self, batch, err, from_backlog):
        """A batch that could not be delivered now: its handles fail with
        `err`; with a spool it waits in the backlog for the server."""
        self._stats["events_not_delivered"] += len(batch.envelopes)
        if batch.futures is not None:
            for f in batch.futures:
                _resolve(f, error=err)
            self._note_error(err)
        if batch.path is not None and not from_backlog:
            self._backlog.append(batch.path)
