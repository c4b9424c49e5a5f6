"""Replay all of 2023 through `dataops serve` in a fresh home and list the incidents with time-to-detect.

    .venv/bin/python benchmarks/replay_incidents.py [--speed 21600] [--start 2023-01-01T00:00Z] [--until 2024-01-01T00:00Z] [--home DIR] [--json]

Nothing is told where the defects are: the service runs its schedules on the replay clock, the monitors and
suites do the finding. Time-to-detect is measured on the replay clock (detected at minus the data time of the
defect); its resolution is about one run's duration times the speed, so slower speeds give finer figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=21600.0, help="simulated seconds per real second (default 6 h/s)")
    parser.add_argument("--start", default="2023-01-01T00:00Z", help="replay clock start (ISO instant)")
    parser.add_argument("--until", default="2024-01-01T00:00Z", help="stop when the replay clock passes this instant")
    parser.add_argument("--home", type=Path, default=None, help="DATAOPS_HOME (default: a new temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the incidents as JSON")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="dataops-replay-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"DATAOPS_HOME": str(home)}
    dataops = [sys.executable, "-m", "evals.cli"]
    started = time.monotonic()
    print(f"replaying into {home} at x{args.speed:g} until {args.until} ...", file=sys.stderr)
    subprocess.run(
        [*dataops, "serve", "--no-agent", "--no-metrics", "--speed", str(args.speed), "--start", args.start, "--until", args.until],
        cwd=REPO,
        env=env,
        check=True,
    )
    elapsed = time.monotonic() - started
    listing = subprocess.run([*dataops, "incidents", "--json"], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    incidents = sorted(json.loads(listing.stdout)["incidents"], key=lambda i: i["id"])
    if args.json:
        print(json.dumps({"elapsed_s": round(elapsed, 1), "speed": args.speed, "incidents": incidents}, indent=2))
        return 0
    print(f"{len(incidents)} incidents in {elapsed:.0f} s real time")
    print(f"{'id':>3} {'kind':<15} {'severity':<8} {'table':<32} {'occurred':<17} {'detected':<17} {'ttd h':>6} {'seen':>4}  title")
    for i in incidents:
        ttd = "" if i["time_to_detect_s"] is None else f"{i['time_to_detect_s'] / 3600:.1f}"
        occurred = (i["occurred_at"] or "")[:16]
        print(
            f"{i['id']:>3} {i['kind']:<15} {i['severity']:<8} {i['table']:<32} {occurred:<17} {i['detected_at'][:16]:<17} {ttd:>6} {i['occurrences']:>4}  {i['title'][:90]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
