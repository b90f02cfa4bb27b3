#!/usr/bin/env python3
"""Checks the Grafana dashboard: valid JSON, unique panel ids, non-overlapping grid positions,
every target on the templated Prometheus data source, and every metric in a query listed in
deploy/grafana/metrics.txt with the labels the query uses (the contract with /metrics)."""
import json
import pathlib
import re
import sys


def contract(path):
    metrics = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, *labels = line.split()
            metrics[name] = (kind, set(labels) | {"instance", "job"})
    return metrics


def series(name, kind):
    if kind == "histogram":
        return {f"{name}_bucket": {"le"}, f"{name}_sum": set(), f"{name}_count": set()}
    return {name: set()}


def main(dashboard):
    dashboard = pathlib.Path(dashboard)
    dash = json.loads(dashboard.read_text())
    metrics = contract(dashboard.with_name("metrics.txt"))
    allowed = {}
    for name, (kind, labels) in metrics.items():
        for s, extra in series(name, kind).items():
            allowed[s] = labels | extra
    errors, ids, cells = [], set(), {}
    for p in dash["panels"]:
        if p["id"] in ids:
            errors.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            errors.append(f"panel {p['title']!r} is wider than the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    errors.append(f"panels {cells[(x, y)]!r} and {p['title']!r} overlap")
                cells[(x, y)] = p["title"]
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"panel {p['title']!r}: target not on $datasource")
            expr = t["expr"]
            for m in re.finditer(r"\b(xdp_ingress_[a-z_]+)(\{([^}]*)\})?", expr):
                name, sel = m.group(1), m.group(3) or ""
                if name not in allowed:
                    errors.append(f"panel {p['title']!r}: {name} is not in metrics.txt")
                    continue
                used = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", sel))
                if used - allowed[name]:
                    errors.append(f"panel {p['title']!r}: {name} has no label {used - allowed[name]}")
            for grouping in re.findall(r"by \(([^)]*)\)", expr):
                labels = {l.strip() for l in grouping.split(",")}
                names = set(re.findall(r"\b(xdp_ingress_[a-z_]+)", expr))
                for n in names & allowed.keys():
                    if labels - allowed[n]:
                        errors.append(f"panel {p['title']!r}: {n} has no label {labels - allowed[n]}")
    for e in errors:
        print(f"{dashboard}: {e}", file=sys.stderr)
    if not errors:
        print(f"{dashboard}: {len(dash['panels'])} panels, queries use only metrics.txt")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
