"""Python client of the solvency service (``solvency serve``): httpx and websockets.

>>> c = Client("http://127.0.0.1:8000", key)              # doctest: +SKIP
>>> c.submit([{"type": "deposit", "id": "d1", ...}])       # doctest: +SKIP
>>> for frame in c.stream(from_seq=0):                     # doctest: +SKIP
...     print(frame["seq"], frame["out"])

Errors from the service raise :class:`ServiceError` carrying its status, reason and
detail (the body of every non-2xx answer is ``{"error": {"reason", "detail"}}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

__all__ = ["Client", "ServiceError"]


class ServiceError(Exception):
    """A non-2xx answer: ``status``, ``reason``, ``detail`` and the decoded ``body``."""

    def __init__(self, status: int, reason: str, detail: str, body: Any) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status, self.reason, self.detail, self.body = status, reason, detail, body


def _dumps(obj: object) -> str:
    def default(v: object) -> object:
        if isinstance(v, Decimal):
            return str(v)
        raise TypeError(f"not JSON: {type(v).__name__}")
    return json.dumps(obj, separators=(",", ":"), default=default)


class Client:
    """A connection to one service, authenticated with one API key."""

    def __init__(self, url: str, key: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}"})

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, r: httpx.Response, *, allow_422: bool = False) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.is_success or (allow_422 and r.status_code == 422 and "results" in body):
            return body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        raise ServiceError(r.status_code, str(err.get("reason", "http")),
                           str(err.get("detail", body)), body)

    def submit(self, events: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Submit one event or several (sent as a JSON array). Returns ``{"seq",
        "results": [{"id", "status", "seq", "reason", "detail", "out"}]}``; a single
        rejected event is answered, not raised."""
        payload: object = events if isinstance(events, Mapping) else list(events)
        r = self._http.post("/v1/events", content=_dumps(payload),
                            headers={"Content-Type": "application/json"})
        result: dict[str, Any] = self._check(r, allow_422=True)
        return result

    def state(self) -> dict[str, Any]:
        """``GET /v1/state``."""
        result: dict[str, Any] = self._check(self._http.get("/v1/state"))
        return result

    def account(self, account: str) -> dict[str, Any]:
        """``GET /v1/accounts/{account}``."""
        result: dict[str, Any] = self._check(
            self._http.get(f"/v1/accounts/{httpx.URL(account).raw_path.decode()}"))
        return result

    def check(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/orders/check``: the pre-trade answer; nothing changes."""
        result: dict[str, Any] = self._check(self._http.post(
            "/v1/orders/check", content=_dumps(order),
            headers={"Content-Type": "application/json"}))
        return result

    def risk(self, top: int = 10) -> dict[str, Any]:
        """``GET /v1/risk``."""
        result: dict[str, Any] = self._check(self._http.get("/v1/risk",
                                                            params={"top": top}))
        return result

    def stream(self, from_seq: int | None = None, *, timeout: float | None = None
               ) -> Iterator[dict[str, Any]]:
        """Out-event frames ``{"seq", "event", "out"}`` from ``from_seq`` on (default:
        from now), as they happen. Ends when the server closes the stream (a client that
        fell behind is closed with code 4008: reconnect with the last ``seq`` seen)."""
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        ws_url = "ws" + self.url[len("http"):] + "/v1/stream"
        if from_seq is not None:
            ws_url += f"?from_seq={int(from_seq)}"
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {self.key}"},
                     open_timeout=timeout or 10.0, max_size=None) as ws:
            while True:
                try:
                    text = ws.recv(timeout=timeout)
                except (ConnectionClosed, TimeoutError):
                    return
                frame: dict[str, Any] = json.loads(text)
                yield frame
