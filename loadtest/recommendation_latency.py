#!/usr/bin/env python3
"""Closed-loop latency of GET /v1/groups/{group}/recommendation.

Standard library only. Pushes one day of 5-minute samples (a daily CPU
wave on `--capacity` instances, ending now) for `--groups` groups into a
running service, then sends `--requests` recommendation requests one after
another over one keep-alive connection, cycling through the groups, and
prints p50 / p90 / p99 / max in milliseconds. The first request per group
runs the encoder; later ones hit the embedding cache unless new samples
arrive, so `--fresh-every K` rewrites the newest sample (a new value at
the same timestamp) every K requests to measure the cache-miss path too.

    python3 loadtest/recommendation_latency.py --url http://127.0.0.1:8080

Interim tool until the open-loop harness (HDR histograms) lands.
"""

import argparse
import http.client
import json
import math
import time
import urllib.parse


def percentile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--capacity", type=int, default=10)
    ap.add_argument("--fresh-every", type=int, default=0,
                    help="push a new sample every K requests (0: never)")
    ap.add_argument("--token", default=None, help="bearer token for ingest")
    args = ap.parse_args()

    u = urllib.parse.urlparse(args.url)
    con = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    step = 300
    end = int(time.time()) // step * step
    names = [f"loadtest-{i:03d}" for i in range(args.groups)]

    def push(group, ts_list, bump=0.0):
        samples = [{
            "timestamp": t,
            "features": {"cpu_usage_pct": 50 + 30 * math.sin(2 * math.pi * (t % 86400) / 86400) + bump},
            "capacity": args.capacity,
        } for t in ts_list]
        con.request("POST", f"/v1/groups/{group}/samples", json.dumps({"samples": samples}), headers)
        r = con.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"ingest {group}: {r.status} {body[:200]!r}")

    for g in names:
        push(g, [end - k * step for k in range(287, -1, -1)])
    print(f"pushed 288 samples to each of {len(names)} groups", flush=True)

    lat = []
    for i in range(args.requests):
        g = names[i % len(names)]
        if args.fresh_every and i % args.fresh_every == 0:
            push(g, [end], bump=(i % 97) / 10.0)
        t0 = time.perf_counter()
        con.request("GET", f"/v1/groups/{g}/recommendation")
        r = con.getresponse()
        body = r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise SystemExit(f"recommendation {g}: {r.status} {body[:200]!r}")
        if i == 0:
            print("first answer:", json.loads(body)["explanation"], flush=True)
    print(f"{len(lat)} requests over {len(names)} groups: "
          f"p50 {percentile(lat, 0.5):.2f} ms, p90 {percentile(lat, 0.9):.2f} ms, "
          f"p99 {percentile(lat, 0.99):.2f} ms, max {max(lat):.2f} ms")


if __name__ == "__main__":
    main()
