"""Parses a node's /metrics with the Prometheus project's own OpenMetrics parser.

Usage: scrape.py http://host:port/metrics
Prints one JSON object: {"<sample name>": {"<labels as k=v,…>": value, …}, …}. Exits non-zero,
saying why, if the page cannot be fetched or is not valid OpenMetrics text (the parser is
strict: types, names, the final # EOF).
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as answer:
        kind = answer.headers.get("Content-Type", "")
        if not kind.startswith("application/openmetrics-text"):
            sys.exit(f"{url}: content type {kind!r}, not OpenMetrics text")
        text = answer.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples.setdefault(s.name, {})[labels] = s.value
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
