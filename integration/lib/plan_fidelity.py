"""Measured routing against the plan, per proxy: python3 plan_fidelity.py WORK SERVICE ZONE...

For each ZONE reads WORK/metrics-ZONE.txt (that proxy's /metrics) and WORK/plan-ZONE.json (its
/admin/plan?service=SERVICE), sums zoneward_requests_total{service=SERVICE,source_zone=ZONE,code_class="2xx"}
per destination zone, and prints one line per plan cell, then "max deviation X" (the largest
|measured fraction - plan probability| over every cell).
"""
import json
import re
import sys

SAMPLE = re.compile(r"^zoneward_requests_total\{([^}]*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def counts(path, service, zone):
    """2xx requests from `zone` per destination zone."""
    found = {}
    with open(path) as metrics:
        for line in metrics:
            match = SAMPLE.match(line.strip())
            if not match:
                continue
            labels = dict(LABEL.findall(match.group(1)))
            if labels.get("service") == service and labels.get("source_zone") == zone and labels.get("code_class") == "2xx":
                destination = labels.get("destination_zone", "")
                found[destination] = found.get(destination, 0) + int(float(match.group(2)))
    return found


def main(work, service, zones):
    worst = 0.0
    for zone in zones:
        with open(f"{work}/plan-{zone}.json") as plan_file:
            plan = json.load(plan_file)["routes"][zone]
        measured = counts(f"{work}/metrics-{zone}.txt", service, zone)
        total = sum(measured.values())
        for destination, probability in sorted(plan.items()):
            count = measured.get(destination, 0)
            fraction = count / total if total else 0
            worst = max(worst, abs(fraction - probability))
            print(f"  {zone} -> {destination}: plan {probability:.3f} measured {fraction:.3f} ({count} of {total})")
    print(f"max deviation {worst:.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: plan_fidelity.py WORK SERVICE ZONE...")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
