"""The demo worker: calls the api instances found in API_ENDPOINTS, forever."""

import os
import time
import urllib.request


def main() -> None:
    endpoints = [e for e in os.environ["API_ENDPOINTS"].split(",") if e]
    interval = float(os.environ.get("INTERVAL", "2"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    print(f"worker calling {', '.join(endpoints)} every {interval:g} s", flush=True)
    while True:
        for base in endpoints:
            try:
                with opener.open(f"{base}/hello", timeout=2) as response:
                    print(response.read().decode(), flush=True)
            except OSError as exc:
                print(f"call to {base} failed: {exc}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
