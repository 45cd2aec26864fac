"""The one way the local cluster's tooling talks to its API server: JSON over mutual TLS, urllib only."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request


def request(server: str, ctx: ssl.SSLContext, method: str, path: str, body: dict | None = None,
            content_type: str = "application/json") -> tuple[int, dict]:
    """(HTTP status, decoded JSON body) of one request; an error status is returned, not raised."""
    req = urllib.request.Request(server + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": content_type, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310 - https on loopback
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
