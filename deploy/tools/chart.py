#!/usr/bin/env python3
"""Renders and checks the Helm chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK;
no helm binary is needed), so CI can run `helm lint` + `helm template` equivalents offline.

  chart.py render CHART OUT_DIR [--values FILE]... [--name N] [--namespace NS]
      lint (strict) and schema-check the values, render, write one YAML file per template.
  chart.py compare RENDERED_DIR MANIFESTS_DIR
      the chart's default render must be the plain manifests (minus Helm's own labels and
      annotations, and the Namespace, which Helm does not own).
"""
import argparse
import pathlib
import sys

import yaml

HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
HELM_ONLY_ANNOTATIONS = {"checksum/config"}


def load_values(files):
    values = {}
    for f in files:
        merge(values, yaml.safe_load(pathlib.Path(f).read_text()) or {})
    return values


def merge(into, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


def render(args):
    import helm_python as helm

    values = load_values(args.values)
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"error": e} for e in report.get("errors", []) or []]
    for m in problems:
        print(f"helm lint: {m.get('path', '')}: {m.get('error')}", file=sys.stderr)
    if problems:
        return 1
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    written = 0
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml") or not list(d for d in yaml.safe_load_all(text) if d):
            continue
        (out / pathlib.Path(path).name).write_text(text)
        written += 1
    print(f"rendered {written} templates of {args.chart} into {out}")
    return 0 if written else 1


def documents(directory):
    docs = {}
    for f in sorted(pathlib.Path(directory).glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[(d["kind"], d["metadata"]["name"])] = d
    return docs


def normalize(obj):
    """Drops Helm-only metadata everywhere in an object (object and pod template)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "labels" and isinstance(v, dict):
                v = {lk: lv for lk, lv in v.items() if lk not in HELM_ONLY_LABELS}
            if k == "annotations" and isinstance(v, dict):
                v = {ak: av for ak, av in v.items() if ak not in HELM_ONLY_ANNOTATIONS}
                if not v:
                    continue
            out[k] = normalize(v)
        return out
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    return obj


def compare(args):
    rendered = documents(args.rendered)
    plain = {k: v for k, v in documents(args.manifests).items() if k[0] != "Namespace"}
    failures = []
    for key in sorted(set(rendered) | set(plain)):
        if key not in rendered:
            failures.append(f"{key}: in {args.manifests} but not rendered by the chart")
        elif key not in plain:
            failures.append(f"{key}: rendered by the chart but not in {args.manifests}")
        elif normalize(rendered[key]) != normalize(plain[key]):
            a = yaml.safe_dump(normalize(plain[key]), sort_keys=True).splitlines()
            b = yaml.safe_dump(normalize(rendered[key]), sort_keys=True).splitlines()
            import difflib

            diff = "\n".join(difflib.unified_diff(a, b, "manifests", "chart", lineterm=""))
            failures.append(f"{key}: chart default differs from the plain manifest:\n{diff}")
    for f in failures:
        print(f, file=sys.stderr)
    if not failures:
        print(f"chart defaults == {args.manifests} ({len(plain)} objects)")
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("chart")
    r.add_argument("out")
    r.add_argument("--values", action="append", default=[])
    r.add_argument("--name", default="xdp-ingress")
    r.add_argument("--namespace", default="xdp-ingress")
    c = sub.add_parser("compare")
    c.add_argument("rendered")
    c.add_argument("manifests")
    args = p.parse_args()
    return render(args) if args.cmd == "render" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
