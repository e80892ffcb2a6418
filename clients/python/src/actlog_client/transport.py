"""HTTP for the client: one keep-alive connection, standard library only."""
import email.utils
import http.client
import ssl
import time
import urllib.parse


class Response:
    __slots__ = ("status", "body", "retry_after")

    def __init__(self, status, body, retry_after):
        self.status = status
        self.body = body
        self.retry_after = retry_after


def parse_retry_after(value):
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP
    date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Transport:
    """POSTs to one actlog server. Not thread-safe: the client's sender
    thread is its only user."""

    def __init__(self, url, token, timeout_s=30.0, ssl_context=None, user_agent="actlog-client-python"):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/prefix], got {url!r}")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent}
        self._conn = None

    def _connect(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                               context=self.ssl_context or ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, body=None, headers=None):
        """One request; raises OSError or http.client.HTTPException when no
        answer came. A keep-alive connection the server had already closed
        is retried once at once on a new connection."""
        h = dict(self.headers)
        if headers:
            h.update(headers)
        for fresh_try in (False, True):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, self.prefix + path, body=body, headers=h)
                resp = self._conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if reused and not fresh_try:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            return Response(resp.status, data, parse_retry_after(resp.getheader("Retry-After")))
        raise AssertionError("unreachable")
