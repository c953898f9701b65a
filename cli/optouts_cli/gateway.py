"""The gateway's HTTP API as the CLI uses it: one `requests` session, the function key in a header.

The key is sent only as `x-functions-key`, never in a URL (URLs end up in proxies' logs and in
exception messages), and no error raised here ever contains it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from optouts_cli.text import printable

API_PREFIX = "/api"
#: How long one call may take: above the gateway's own time budget (60 s by default).
DEFAULT_TIMEOUT_SECONDS = 120.0
#: Transient answers worth a retry for calls that can safely be repeated (add and remove are idempotent).
_TRANSIENT_STATUSES = (429, 502, 503, 504)
#: A Retry-After is honoured up to this many seconds: an operator waits at a prompt.
_MAX_RETRY_AFTER_SECONDS = 10.0


class UsageError(Exception):
    """A setting the operator gave is unusable (URL, key): nothing was sent."""


@dataclass
class GatewayError(Exception):
    """The gateway refused the request, or could not be reached. `message` is safe to print:
    it holds the gateway's own problem text (sanitized), never the function key."""

    message: str
    status: int | None = None
    code: str | None = None
    trace_id: str | None = None

    def __str__(self) -> str:
        return self.message


class _CappedRetry(Retry):
    """urllib3's retry, with a Retry-After longer than the cap shortened to it."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, _MAX_RETRY_AFTER_SECONDS)


def _parse_base_url(url: str) -> str:
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("the gateway URL must be http(s)://host[:port], such as http://127.0.0.1:7071")
    if parts.query or parts.fragment or parts.username or parts.password:
        # A `?code=` in the URL would put the key where URLs go: shell history, proxies, error messages.
        raise UsageError("the gateway URL must not carry a query, a fragment or credentials; "
                         "give the key with --key or OPTOUTS_KEY")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):  # both https://host and https://host/api are accepted
        path = path[: -len(API_PREFIX)]
    return f"{parts.scheme}://{parts.netloc}{path}"


class Gateway:
    """One gateway, one key. Methods answer parsed JSON or raise `GatewayError`."""

    def __init__(self, url: str, key: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not key.strip():
            raise UsageError("no function key: give --key or set OPTOUTS_KEY")
        self.base_url = _parse_base_url(url)
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers["x-functions-key"] = key.strip()
        self._session.headers["user-agent"] = "optouts-cli/0.1"
        # GET, DELETE and the bulk POSTs (idempotent) are retried on transient answers; a job
        # submission is not (a repeat would start a second job), see submit_job.
        retry = _CappedRetry(total=3, connect=2, read=0, status=2, backoff_factor=0.5,
                             backoff_max=_MAX_RETRY_AFTER_SECONDS, status_forcelist=_TRANSIENT_STATUSES,
                             allowed_methods=frozenset({"GET", "POST", "DELETE"}),
                             respect_retry_after_header=True, raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the opt-out API ------------------------------------------------------------------

    def bulk(self, action: str, numbers: list[str], *, sender: str | None, region: str | None,
             reason: str | None) -> dict[str, Any]:
        """POST /api/optouts/{add|remove|check}: the operation's report (results in input order)."""
        body: dict[str, Any] = {"phoneNumbers": numbers}
        for name, value in (("sender", sender), ("region", region), ("reason", reason)):
            if value is not None:
                body[name] = value
        return self._json("POST", f"optouts/{action}", json=body)

    def history(self, number: str, *, sender: str | None, page_size: int) -> Iterator[dict[str, Any]]:
        """Every record of the number's history, newest first, following `nextLink` page by page."""
        params: dict[str, Any] = {"top": page_size}
        if sender is not None:
            params["sender"] = sender
        url: str | None = self._url(f"optouts/{quote(number, safe='')}/history")
        while url is not None:
            page = self._json("GET", url, params=params)
            yield from page.get("value", [])
            next_link = page.get("nextLink")
            # nextLink is absolute and carries the query; the key stays in the header.
            url = self._same_origin(next_link) if isinstance(next_link, str) else None
            params = {}

    def operation(self, operation_id: str) -> dict[str, Any]:
        return self._json("GET", f"operations/{quote(operation_id, safe='')}")

    # -- the jobs API (docs/jobs.md) ------------------------------------------------------

    def submit_job(self, action: str, body: bytes, *, content_type: str, sender: str | None,
                   region: str | None, reason: str | None) -> dict[str, Any]:
        params = {name: value for name, value in
                  (("action", action), ("sender", sender), ("region", region), ("reason", reason))
                  if value is not None}
        # Not retried: a repeated POST would create a second job.
        with requests.Session() as once:
            once.headers.update(self._session.headers)
            answer = self._send(once, "POST", self._url("jobs"), params=params, data=body,
                                headers={"content-type": content_type})
        return self._expect_json(answer)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"jobs/{quote(job_id, safe='')}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"jobs/{quote(job_id, safe='')}")

    def job_report(self, job_id: str) -> Iterator[bytes]:
        """The report's CSV bytes, streamed. Raises GatewayError (status 409) while unfinished,
        before the first byte, so that no output file is started for a report that is not there."""
        response = self._send(self._session, "GET", self._url(f"jobs/{quote(job_id, safe='')}/report"), stream=True)
        if response.status_code != 200:
            with response:
                raise self._error(response)
        return self._stream(response)

    def _stream(self, response: requests.Response) -> Iterator[bytes]:
        with response:
            try:
                yield from response.iter_content(chunk_size=64 * 1024)
            except requests.RequestException as error:
                raise self._network_error(error) from None

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}/{path}"

    def _same_origin(self, link: str) -> str:
        """A nextLink from the gateway, re-based on the URL the operator gave: behind a proxy the
        gateway may name another host, and the key must only ever go to the one given."""
        parts = urlsplit(link)
        path = parts.path
        if not path.startswith(API_PREFIX + "/"):
            raise GatewayError("the gateway answered a nextLink outside its API")
        base = urlsplit(self.base_url)
        prefix = base.path
        return f"{base.scheme}://{base.netloc}{prefix}{path}" + (f"?{parts.query}" if parts.query else "")

    def _json(self, method: str, path_or_url: str, **kwargs: Any) -> dict[str, Any]:
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self._url(path_or_url)
        return self._expect_json(self._send(self._session, method, url, **kwargs))

    def _send(self, session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return session.request(method, url, timeout=self._timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as error:
            raise self._network_error(error) from None

    def _network_error(self, error: requests.RequestException) -> GatewayError:
        # The exception's own text names the URL (with a phone number in some paths) and the
        # pool's internals; the kind of failure and the gateway's origin say enough.
        if isinstance(error, requests.exceptions.SSLError):
            why = "the TLS handshake failed (certificate not trusted? REQUESTS_CA_BUNDLE names a CA bundle)"
        elif isinstance(error, requests.exceptions.Timeout):
            why = f"no answer within {self._timeout:g} s (--http-timeout)"
        elif isinstance(error, requests.exceptions.ConnectionError):
            why = "the connection failed (is the gateway running at that URL?)"
        else:
            why = type(error).__name__
        return GatewayError(f"could not reach the gateway at {self.base_url}: {why}")

    def _expect_json(self, response: requests.Response) -> dict[str, Any]:
        if not 200 <= response.status_code < 300:
            raise self._error(response)
        try:
            body = response.json()
        except ValueError:
            raise GatewayError(f"the gateway answered {response.status_code} without JSON",
                               status=response.status_code) from None
        if not isinstance(body, dict):
            raise GatewayError("the gateway answered JSON that is not an object", status=response.status_code)
        return body

    def _error(self, response: requests.Response) -> GatewayError:
        status = response.status_code
        trace_id = response.headers.get("x-trace-id")
        if status == 401:
            return GatewayError("the gateway refused the function key (401): check --key or OPTOUTS_KEY",
                                status=status, trace_id=trace_id)
        if 300 <= status < 400:
            return GatewayError(f"the gateway answered a redirect ({status}); give its final URL with --url",
                                status=status)
        problem: Any = None
        try:
            problem = response.json()
        except ValueError:
            pass
        if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
            code = printable(str(problem.get("code") or ""), 64) or None
            trace_id = printable(str(problem.get("traceId") or trace_id or ""), 64) or None
            title = printable(str(problem.get("title") or "error"), 120)
            message = f"{status} {title}: {printable(problem['detail'], 500)}"
            if code:
                message += f" [{code}]"
            return GatewayError(message, status=status, code=code, trace_id=trace_id)
        if status == 404:
            return GatewayError("404: the gateway has no such route (an older gateway without this API?)",
                                status=status, trace_id=trace_id)
        return GatewayError(f"the gateway answered {status} {printable(response.reason or '', 60)}".rstrip(),
                            status=status, trace_id=trace_id)
