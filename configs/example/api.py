"""The demo API: answers /health and /hello with which instance it is."""

import os
from http.server import ThreadingHTTPServer

from jsonhttp import JSONHandler

INSTANCE = os.environ.get("CORRAL_INSTANCE_ID", "api")


class Handler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        elif self.path == "/hello":
            self.reply(200, {"message": "hello", "instance": INSTANCE})
        else:
            self.reply(404, {"error": f"no route {self.path}"})


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"{INSTANCE} listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
