#!/usr/bin/env python3
"""Validates ServiceMonitor and PrometheusRule objects against prometheus-operator's CRD
schemas (the `cloudcoil-models-prometheus-operator` models, generated from the CRDs), strictly:
a field the schema does not know is an error, as `kubectl apply --validate=strict` makes it.

Usage: validate_crds.py FILE.yaml  (every document of a kind it knows is checked; exit 1 on
any error, 2 if it finds none to check)."""

import sys

import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}


def unknown_fields(given, kept, path):
    """Fields of `given` that validation dropped from `kept` (the model ignores unknown ones)."""
    if isinstance(given, dict):
        for key, value in given.items():
            if not isinstance(kept, dict) or key not in kept:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            yield from unknown_fields(g, k, f"{path}[{i}]")


def main(path):
    errors, checked = [], 0
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        model = KINDS.get(doc.get("kind"))
        if model is None:
            continue
        checked += 1
        name = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
        try:
            obj = model.model_validate(doc)
        except Exception as e:  # pydantic's ValidationError lists every problem
            errors.append(f"{name}: {e}")
            continue
        kept = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
        errors += [f"{name}: unknown field {f}" for f in unknown_fields(doc, kept, "")]
    for e in errors:
        print(e, file=sys.stderr)
    if checked == 0:
        print(f"{path}: no ServiceMonitor or PrometheusRule to check", file=sys.stderr)
        return 2
    print(f"{path}: {checked} prometheus-operator objects checked, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
