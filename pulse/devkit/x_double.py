"""Local doubles of the X API v2 (recent search; creating posts), mounted on a real
`tweepy.Client`'s session.

`XSearchDouble` is a `requests` transport adapter: mount it on the client's own session
(`mount_on(client)`) and every request the real tweepy client sends is checked as X would
receive it (method, host, path, bearer token, the fields and expansions Pulse asks for), then
answered with the next recorded reply: a status and a body in the documented v2 shape, with
X's rate-limit headers. Nothing leaves the machine.
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

log = logging.getLogger(__name__)

#: A reply that stands for a connection that could not be made.
CONNECTION_REFUSED = "connection refused"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


class XSearchDouble(BaseAdapter):
    """Answers each request with the next recorded reply, after checking the request.

    Parameters
    ----------
    *replies : (status, body)
        In order; a body is a file path, bytes, or `CONNECTION_REFUSED`.
    token : str
        The bearer token the client must present.
    reset_in : int
        Seconds until the rate-limit window resets (`x-rate-limit-reset`).
    """

    def __init__(self, *replies: tuple[int, Path | bytes | str], token: str,
                 reset_in: int = 900) -> None:
        super().__init__()
        self.replies = list(replies)
        self.token = token
        self.reset_in = reset_in
        self.params: list[dict[str, str]] = []

    def mount_on(self, client: Any) -> XSearchDouble:
        """Mount on a `tweepy.Client`'s session (its base URL); returns self."""
        client.session.mount("https://api.twitter.com/", self)
        return self

    def send(self, request: requests.PreparedRequest,  # type: ignore[override]
             **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        assert (request.method, url.netloc, url.path) == (
            "GET", "api.twitter.com", "/2/tweets/search/recent")
        assert request.headers["Authorization"] == f"Bearer {self.token}"
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert params["expansions"] == "author_id"
        assert set(params["tweet.fields"].split(",")) >= {"created_at", "lang", "author_id",
                                                         "referenced_tweets"}
        assert params["user.fields"] == "username,name" and params["max_results"] == "100"
        self.params.append(params)
        status, reply = self.replies.pop(0)
        if reply == CONNECTION_REFUSED:
            raise requests.ConnectionError(CONNECTION_REFUSED)
        body = Path(reply).read_bytes() if isinstance(reply, Path | str) else reply
        response = requests.Response()
        response.status_code = status
        response.reason = _REASONS.get(status, "Error")
        response.headers = CaseInsensitiveDict({
            "content-type": ("application/json; charset=utf-8" if status == 200
                             else "application/problem+json"),
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": "0" if status == 429 else "447",
            "x-rate-limit-reset": str(int(time.time()) + self.reset_in),
        })
        response._content = body
        response.raw = io.BytesIO(body)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


class XPostDouble(BaseAdapter):
    """`POST /2/tweets` as X checks it, for a real `tweepy.Client` acting as a user.

    It refuses what X refuses: a request not signed with OAuth 1.0a user context for the
    expected consumer key and access token (401), a body without `text` (400), a text longer
    than 280 as X counts it (400), the same text twice (403, duplicate content), and more
    than `limit` posts in the window (429, with X's rate-limit headers), and a reply
    (`reply.in_reply_to_tweet_id`) to an id that is not a tweet id (400) or to a tweet that
    does not exist or is not visible (403): the tweets that exist are `tweets` and the posts
    accepted here. Accepted posts get 201 and an id; `posts` lists the texts X would show,
    `replies` each reply's (text, in_reply_to_tweet_id).
    """

    def __init__(self, *, consumer_key: str, access_token: str, limit: int = 100,
                 down: bool = False, tweets: Iterable[str] = ()) -> None:
        super().__init__()
        self.consumer_key, self.access_token = consumer_key, access_token
        self.limit, self.down = limit, down
        self.posts: list[str] = []
        self.replies: list[tuple[str, str]] = []
        self.tweets = {str(t) for t in tweets}
        self.requests = 0

    def mount_on(self, client: Any) -> XPostDouble:
        client.session.mount("https://api.twitter.com/", self)
        return self

    def _reply(self, request: requests.PreparedRequest, status: int, doc: dict[str, Any]
               ) -> requests.Response:
        import json

        body = json.dumps(doc).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = {201: "Created"}.get(status, _REASONS.get(status, "Error"))
        response.headers = CaseInsensitiveDict({
            "content-type": ("application/json; charset=utf-8" if status < 400
                             else "application/problem+json"),
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(max(0, self.limit - len(self.posts))),
            "x-rate-limit-reset": str(int(time.time()) + 900),
        })
        response._content = body
        response.raw = io.BytesIO(body)
        response.url = request.url or ""
        response.request = request
        return response

    def send(self, request: requests.PreparedRequest,  # type: ignore[override]
             **kwargs: Any) -> requests.Response:
        import json

        from pulse.outreach.x_posts import LIMIT, x_length

        self.requests += 1
        url = urlsplit(request.url or "")
        assert (request.method, url.netloc, url.path) == ("POST", "api.twitter.com",
                                                          "/2/tweets")
        if self.down:
            return self._reply(request, 503, {"title": "Service Unavailable", "status": 503})
        auth = request.headers.get("Authorization", "")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        if not (auth.startswith("OAuth ") and f'oauth_consumer_key="{self.consumer_key}"' in auth
                and f'oauth_token="{self.access_token}"' in auth and "oauth_signature=" in auth):
            return self._reply(request, 401, {"title": "Unauthorized", "status": 401,
                                              "detail": "Unauthorized"})
        if len(self.posts) >= self.limit:
            return self._reply(request, 429, {"title": "Too Many Requests", "status": 429,
                                              "detail": "Too Many Requests"})
        body = request.body if isinstance(request.body, bytes | str) else b"{}"
        doc = json.loads(body or b"{}")
        text = doc.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._reply(request, 400, {"title": "Invalid Request", "status": 400,
                                              "detail": "text is required"})
        if x_length(text) > LIMIT:
            return self._reply(request, 400, {
                "title": "Invalid Request", "status": 400,
                "detail": f"The text is {x_length(text)} characters; the limit is {LIMIT}"})
        reply = doc.get("reply")
        to = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        if reply is not None and not (isinstance(to, str) and re.fullmatch(r"[0-9]{1,19}", to)):
            return self._reply(request, 400, {
                "title": "Invalid Request", "status": 400,
                "detail": f"The `reply.in_reply_to_tweet_id` value [{to}] is not valid"})
        if to is not None and to not in self.tweets:
            return self._reply(request, 403, {
                "title": "Forbidden", "status": 403, "detail": "You attempted to reply to a "
                "Tweet that is deleted or not visible to you."})
        if text in self.posts:
            return self._reply(request, 403, {
                "title": "Forbidden", "status": 403, "detail": "You are not allowed to create a "
                "Tweet with duplicate content."})
        self.posts.append(text)
        tweet_id = str(1_800_000_000_000_000_000 + len(self.posts))
        self.tweets.add(tweet_id)
        if to is not None:
            self.replies.append((text, to))
        return self._reply(request, 201, {"data": {"id": tweet_id, "text": text,
                                                   "edit_history_tweet_ids": []}})


class XPostServer:
    """An `XPostDouble` served over HTTP on 127.0.0.1 while the context is open, for clients
    in another process (an Airflow task): point PULSE_X_API_HOST at `url`. Each request is
    handed to the double as if it had reached api.twitter.com; `double` keeps what it saw."""

    def __init__(self, double: XPostDouble) -> None:
        self.double = double
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the X double is not running")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def __enter__(self) -> XPostServer:
        handler = type("Handler", (_XHandler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="x-double").start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _XHandler(BaseHTTPRequestHandler):
    owner: XPostServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("x double: " + format, *args)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "content-length")}
        request = requests.Request("POST", "https://api.twitter.com" + self.path,
                                   headers=headers, data=body).prepare()
        with self.owner.lock:
            response = self.owner.double.send(request)
        content = response.content or b""
        self.send_response(response.status_code, response.reason)
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(content)
        self.close_connection = True
