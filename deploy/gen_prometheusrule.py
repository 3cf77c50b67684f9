#!/usr/bin/env python3
"""Generate deploy/k8s/base/prometheusrule.yaml (prometheus-operator) from the single source
of truth, deploy/prometheus/alerts.yml: the PrometheusRule's spec.groups are the rules file's
groups, unchanged.

    python deploy/gen_prometheusrule.py           # rewrite the manifest
    python deploy/gen_prometheusrule.py --check   # exit 1 if the manifest is out of date

Needs PyYAML only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
RULES = DEPLOY / "prometheus" / "alerts.yml"
MANIFEST = DEPLOY / "k8s" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/gen_prometheusrule.py: do not edit.
# Edit the rules file and run `python deploy/gen_prometheusrule.py`; tests/deploy checks that
# this manifest's spec.groups equal the rules file's groups.
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, as in the rules file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def manifest(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "vae-anomaly",
            "labels": {"app.kubernetes.io/name": "vae-anomaly"},
        },
        "spec": {"groups": rules["groups"]},
    }


def render(rules_path: Path = RULES) -> str:
    rules = yaml.safe_load(rules_path.read_text())
    body = yaml.dump(manifest(rules), Dumper=_BlockDumper, sort_keys=False, width=100,
                     allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the manifest differs from a fresh render")
    parser.add_argument("--rules", type=Path, default=RULES)
    parser.add_argument("--out", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    text = render(args.rules)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date with {args.rules}: run "
                  "python deploy/gen_prometheusrule.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
