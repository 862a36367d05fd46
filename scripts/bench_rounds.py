"""Rounds per hour and the eval loss per round of a running devnet, from one node's API.

    python scripts/bench_rounds.py [--url http://127.0.0.1:26600]

Reads every closed round's closing block (its header time) and /rounds/{r}, and prints
one JSON object: per round its duration, accepted units and eval loss, and the mean
rounds per hour over the closed rounds after the first (the first also waits for the
nodes to start and compile their kernels).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def measure(url: str) -> dict:
    status = _get(f"{url}/status")
    first = _get(f"{url}/blocks/1")["header"]["time_ms"]
    rounds, previous = [], first
    for r in range(status["round"]):
        view = _get(f"{url}/rounds/{r}")
        closed_ms = _get(f"{url}/blocks/{view['close_height']}")["header"]["time_ms"]
        rounds.append({"round": r, "seconds": (closed_ms - previous) / 1000,
                       "accepted_units": sum(u["status"] == "accepted" for u in view["units"]),
                       "units": len(view["units"]), "eval_loss": view["eval_loss"]})
        previous = closed_ms
    steady = [r["seconds"] for r in rounds[1:]]
    return {"url": url, "height": status["height"], "rounds": rounds,
            "rounds_per_hour": round(3600 * len(steady) / sum(steady), 1) if steady else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:26600")
    args = parser.parse_args()
    try:
        print(json.dumps(measure(args.url.rstrip("/"))))
    except (OSError, ValueError, KeyError) as exc:
        print(f"bench_rounds: cannot read the devnet at {args.url}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
