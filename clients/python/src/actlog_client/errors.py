"""Exceptions raised by the actlog producer client."""
import json


class ActlogError(Exception):
    """Base class of every error this package raises for a batch.

    `spooled` is True when the events concerned are still in the spool
    directory and will be re-sent (by this client once the server answers
    again, or by the next `Client` on the same spool directory).
    """

    spooled = False


class ItemError:
    """One entry of the server's `error.items`: what is wrong with one envelope."""

    __slots__ = ("index", "code", "message", "path")

    def __init__(self, index, code, message, path):
        self.index = index
        self.code = code
        self.message = message
        self.path = path

    def __repr__(self):
        return f"ItemError(index={self.index!r}, code={self.code!r}, path={self.path!r}, message={self.message!r})"

    def __eq__(self, other):
        return isinstance(other, ItemError) and (self.index, self.code, self.message, self.path) == (
            other.index, other.code, other.message, other.path)


class ServerError(ActlogError):
    """The server refused a request: its HTTP status and error body.

    `code`, `message` and `items` come from `{"error": {"code", "message",
    "items": [{"index", "code", "message", "path"}]}}`; `body` is the raw
    answer. When the client re-sent the good part of a refused batch,
    `item` is the entry about this very event (its `index` is the event's
    position in the request that was refused).
    """

    def __init__(self, status, code, message, items=(), body=b"", retry_after=None):
        self.status = status
        self.code = code
        self.message = message
        self.items = list(items)
        self.body = body
        self.retry_after = retry_after
        self.item = None
        super().__init__(f"actlog answered {status} {code}: {message}")

    @classmethod
    def from_response(cls, status, body, retry_after=None):
        code, message, items = f"http_{status}", "", []
        try:
            err = json.loads(body)["error"]
            code = str(err.get("code", code))
            message = str(err.get("message", ""))
            for it in err.get("items") or []:
                items.append(ItemError(it.get("index"), it.get("code"), it.get("message"), it.get("path")))
        except (ValueError, KeyError, TypeError, AttributeError):
            message = body[:500].decode("utf-8", "replace")
        return cls(status, code, message, items, body, retry_after)

    def for_item(self, item):
        """A copy naming one refused envelope (`item`), for that event's handle."""
        e = ServerError(self.status, self.code, f"{self.message} [{item.code} at {item.path!r}: {item.message}]",
                        self.items, self.body, self.retry_after)
        e.item = item
        return e

    def __str__(self):
        s = super().__str__()
        if self.items:
            first = self.items[0]
            s += f" (item {first.index}: {first.code} at {first.path!r}: {first.message}"
            s += f"; {len(self.items) - 1} more)" if len(self.items) > 1 else ")"
        return s


class Unavailable(ActlogError):
    """The batch could not be delivered: connection errors, timeouts, or
    429/5xx answers until the retry budget ran out (or the client is
    waiting for a server that stopped answering). `cause` is the last
    error seen. With a spool directory the events are kept and re-sent."""

    def __init__(self, message, cause=None, spooled=False):
        super().__init__(message if cause is None else f"{message}: {cause}")
        self.cause = cause
        self.spooled = spooled


class SpoolError(ActlogError):
    """The batch could not be written to the spool directory; it was not
    accepted (nothing of it was sent)."""


class ClientClosed(ActlogError):
    """`record()` after `close()`."""
