"""The demo greeter: a second API that answers by calling `api`.

It learns api's endpoints at start from API_ENDPOINTS and then follows them
live through the registry, logging every change of api's instances.
"""

import itertools
import json
import os
import threading
import urllib.request
from http.server import ThreadingHTTPServer

from jsonhttp import JSONHandler

from registry import open_registry

_lock = threading.Lock()
_endpoints = [e for e in os.environ.get("API_ENDPOINTS", "").split(",") if e]
_turn = itertools.count()


def follow_api() -> None:
    """Keep `_endpoints` equal to api's registered endpoints."""
    global _endpoints
    registry = open_registry(os.environ["CORRAL_REGISTRY"])
    for instances in registry.watch("api"):
        found = sorted(e for i in instances for e in i.endpoints)
        with _lock:
            _endpoints = found
        print(f"api instances changed: {', '.join(found) or 'none'}", flush=True)


def ask_api() -> dict[str, str]:
    with _lock:
        endpoints = list(_endpoints)
    if not endpoints:
        raise OSError("no api instance is registered")
    base = endpoints[next(_turn) % len(endpoints)]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/hello", timeout=2) as response:
        return json.load(response)


class Handler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
            return
        try:
            answer = ask_api()
        except OSError as exc:
            self.reply(502, {"error": str(exc)})
            return
        self.reply(200, {"greeting": f"{answer['message']} via {answer['instance']}"})


def main() -> None:
    threading.Thread(target=follow_api, daemon=True).start()
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"greeter listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
