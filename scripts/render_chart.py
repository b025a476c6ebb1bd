"""Lint and render a Helm chart offline, as ``helm lint --strict`` and ``helm template`` do.

    render_chart.py CHART OUT_DIR [VALUES.yaml ...] [--set-json JSON]

Runs in the deployment tools' environment (``make setup-deploy-tools``: helm-python-sdk, Helm's
own Go SDK as a library, so no helm binary is needed). Values files are merged in order, as
``helm -f a -f b`` does (maps merged key by key, anything else replaced), then ``--set-json``.
Each rendered manifest is written to OUT_DIR under its template's name; lint findings are
printed, and any warning or error exits 1 (so does a template that fails to render).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("values", nargs="*", type=Path)
    parser.add_argument("--set-json", default="{}", help="values given last, as a JSON object")
    args = parser.parse_args()

    values: dict[str, Any] = {}
    for path in args.values:
        values = merged(values, helm.values_from_yaml(path.read_text()))
    values = merged(values, json.loads(args.set_json))

    report = helm.lint(str(args.chart), values, strict=True)
    problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    for message in report.get("messages") or []:
        print(f"lint: {message}", file=sys.stderr)
    for error in report.get("errors") or []:
        print(f"lint error: {error}", file=sys.stderr)
    if problems or report.get("errors"):
        return 1

    chart = helm.Chart.load(str(args.chart))
    try:
        manifests = chart.render(values, name="voxline", namespace="voice", is_install=True)
    except helm.HelmError as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for template, text in sorted(manifests.items()):
        if template.endswith(".yaml") and text.strip():
            (args.out / Path(template).name).write_text(text)
            print(args.out / Path(template).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
