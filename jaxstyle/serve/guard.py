"""Request checks in front of the app: Host (DNS rebinding), cross-site writes, safe headers.

- ``Host`` must name this server (loopback names by default): a page on another site that
  rebinds its own name to 127.0.0.1 sends its own name as Host and is refused.
- A state-changing request (POST, PUT, PATCH, DELETE) is refused when the browser says it
  comes from another site (``Sec-Fetch-Site`` other than ``same-origin``/``none``) or its
  ``Origin`` is not this server's. Clients that send neither (curl, scripts) are allowed:
  they are not a browser acting for another site.
- Every response says ``nosniff``, may not be framed, and the page may load nothing from
  other origins (Content-Security-Policy).
"""

from __future__ import annotations

import json

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


class Guard:
    def __init__(self, app, allowed_hosts=("127.0.0.1", "localhost", "[::1]")):
        self.app = app
        # "*" allows any Host (a server bound to a public address, reached by any name).
        self.allowed = None if "*" in allowed_hosts else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = self._check(scope["method"], host, headers)
        if problem:
            return await _refuse(send, *problem)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + HEADERS}
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def _check(self, method: str, host: str, headers: dict) -> tuple[int, str] | None:
        name = _host_name(host)
        if self.allowed is not None and name not in self.allowed:
            return 421, f"this server does not answer to the host name {name!r}"
        if method.upper() not in STATE_CHANGING:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            return 403, "cross-origin request refused (the Origin is not this server)"
        return None


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + HEADERS})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Guard"]
