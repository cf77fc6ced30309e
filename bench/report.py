#!/usr/bin/python3
"""Summarise the measurements of scripts/bench.sh and write the generated docs block.

Input: a JSON-lines file written by scripts/bench.sh. One line has "type": "meta" (date,
machine, commit, command, options); every other line has "type": "measurement", with "name",
"run", "ok", an optional "error", and "result", the JSON object that wrk (bench/*.lua),
keyward-loadgen, keyward-bench-hsm or keyward-bench-sqlite printed, or {"value": X} for
figures the script computes itself (memory, database size).

Output: a short table on stdout and, with --docs FILE, the block between the markers
<!-- bench:begin --> and <!-- bench:end --> in FILE replaced (or inserted after the page's
introduction when the markers are missing). Text outside the block is kept as it is.
Exit status: 0, or 1 when a measurement failed, 2 on unusable input.
Only the Python standard library is used, so /usr/bin/python3 runs it.
"""

import argparse
import json
import statistics
import sys
import textwrap
from dataclasses import dataclass
from typing import Callable, Optional

BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"


def rate(result: dict) -> Optional[float]:
    """Operations per second: ops_per_sec where a program reports it, else requests/s."""
    for key in ("ops_per_sec", "rps"):
        if isinstance(result.get(key), (int, float)):
            return float(result[key])
    return None


def latency(percentile: str) -> Callable[[dict], Optional[float]]:
    def extract(result: dict) -> Optional[float]:
        value = (result.get("latency_ms") or {}).get(percentile)
        return float(value) if isinstance(value, (int, float)) else None

    return extract


def scalar(result: dict) -> Optional[float]:
    value = result.get("value")
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Figure:
    """One row of the tables: where its values come from and what it is compared with."""

    name: str  # key of the figure; also the measurement name unless `source` is set
    label: str
    unit: str
    extract: Callable[[dict], Optional[float]] = rate
    source: Optional[str] = None
    ceiling: Optional[str] = None  # name of the figure it is divided by (medians)
    target: Optional[tuple] = None  # (">=" or "<", number); on the ratio when a ceiling is set
    phase: str = "normal"
    short: str = ""  # name in the ratio column when other figures are divided by this one

    @property
    def measurement(self) -> str:
        return self.source or self.name


HSM_FIGURES = [
    Figure(f"hsm_{op}_{key}_t{threads}",
           f"SoftHSM {label}, {key} key, {threads} thread{'s' if threads > 1 else ''}", "ops/s")
    for op, label in (("aes", "AES-GCM decrypt 1 KiB"), ("ecdsa", "ECDSA P-256 sign"))
    for key in ("token", "session")
    for threads in (1, 2)
]

CEILINGS = [
    Figure("nginx", "nginx, 200-byte static JSON, keep-alive", "req/s", short="nginx"),
    *HSM_FIGURES,
    Figure("hsm_ecdsa_best", "SoftHSM ECDSA P-256 sign, best of the four above", "ops/s",
           short="HSM sign"),
    Figure("sqlite_full_t1", "SQLite single-row commit, synchronous=FULL, 1 thread",
           "commits/s", short="SQLite commit"),
]

WORKLOADS = [
    Figure("kv_read", "KV read, 1 KiB, non-root token", "req/s", ceiling="nginx",
           target=(">=", 0.4), short="KV read"),
    Figure("kv_write", "KV write, 1 KiB, over 1,000 secrets", "req/s",
           ceiling="sqlite_full_t1", target=(">=", 1.0), short="KV write"),
    Figure("kv_write_one", "KV write, 1 KiB, one secret (writes serialise)", "req/s",
           ceiling="sqlite_full_t1"),
    Figure("token_create", "token create (child token)", "req/s", ceiling="sqlite_full_t1",
           target=(">=", 0.7)),
    Figure("approle_login", "AppRole login", "req/s", ceiling="sqlite_full_t1",
           target=(">=", 0.7)),
    Figure("db_creds", "database credential issue + revoke (PostgreSQL)", "pairs/s"),
    Figure("x509_svid", "X.509-SVID issue", "req/s", ceiling="hsm_ecdsa_best",
           target=(">=", 0.5)),
    Figure("jwt_svid", "JWT-SVID issue", "req/s", ceiling="hsm_ecdsa_best",
           target=(">=", 0.5)),
    Figure("mixed", "mixed, 90% KV read / 10% KV write", "req/s"),
    Figure("latency_rps", "mixed at a fixed rate: replies per second", "req/s",
           source="latency"),
    Figure("latency_p50", "mixed at a fixed rate: p50 latency", "ms", latency("p50"),
           source="latency"),
    Figure("latency_p99", "mixed at a fixed rate: p99 latency", "ms", latency("p99"),
           source="latency", target=("<", 5.0)),
    Figure("latency_p999", "mixed at a fixed rate: p99.9 latency", "ms", latency("p999"),
           source="latency"),
    Figure("kv_read_idle", "KV read with idle keep-alive connections held open", "req/s",
           ceiling="kv_read", target=(">=", 0.8)),
    Figure("rss_idle", "server peak RSS (VmHWM), idle after start", "MiB", scalar,
           target=("<", 40.0)),
    Figure("rss_after_runs", "server peak RSS (VmHWM) after the normal runs", "MiB", scalar),
]

SCALE = [
    Figure("scale_fill", "load the secrets (1 KiB each, 64 connections)", "req/s",
           phase="scale"),
    Figure("scale_leases", "load the database leases", "req/s", phase="scale"),
    Figure("kv_read_scale", "KV read with the store loaded", "req/s", ceiling="kv_read",
           phase="scale"),
    Figure("kv_write_scale", "KV write over 1,000 secrets with the store loaded", "req/s",
           ceiling="kv_write", phase="scale"),
    Figure("rss_scale", "server peak RSS (VmHWM) while loading and using the store", "MiB",
           scalar, target=("<", 200.0), phase="scale"),
    Figure("db_bytes_per_secret", "database growth per stored secret", "bytes", scalar,
           phase="scale"),
]

ALL_FIGURES = CEILINGS + WORKLOADS + SCALE
FIGURES_BY_NAME = {figure.name: figure for figure in ALL_FIGURES}


class Results:
    """The values of every figure, by run, and the failed measurements."""

    def __init__(self, lines: list):
        self.meta = {}
        self.values = {}  # figure name -> list of (run, value)
        self.failures = []  # (name, run, error)
        self.measured = set()
        for record in lines:
            if record.get("type") == "meta":
                self.meta = record
            elif record.get("type") == "measurement":
                self.add(record)
        self.derive_best_ecdsa()

    def add(self, record: dict):
        name = record.get("name", "?")
        run = record.get("run", 0)
        self.measured.add(name)
        if not record.get("ok", False):
            self.failures.append((name, run, record.get("error") or "failed"))
            return
        result = record.get("result") or {}
        for figure in ALL_FIGURES:
            if figure.measurement != name:
                continue
            value = figure.extract(result)
            if value is None:
                self.failures.append((figure.name, run, "no value in the result"))
            else:
                self.values.setdefault(figure.name, []).append((run, value))

    def derive_best_ecdsa(self):
        best = {}
        for figure in HSM_FIGURES:
            if not figure.name.startswith("hsm_ecdsa_"):
                continue
            for run, value in self.values.get(figure.name, []):
                best[run] = max(best.get(run, 0.0), value)
        if best:
            self.values["hsm_ecdsa_best"] = sorted(best.items())

    def series(self, name: str) -> list:
        return [value for _, value in self.values.get(name, [])]

    def median(self, name: str) -> Optional[float]:
        values = self.series(name)
        return statistics.median(values) if values else None


def format_value(value: Optional[float], unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value:.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


@dataclass
class Row:
    figure: Figure
    low: Optional[float]
    median: Optional[float]
    high: Optional[float]
    ceiling: Optional[float]
    ratio: Optional[float]
    met: Optional[bool]  # None when the figure has no target or no value


def evaluate(results: Results, figure: Figure) -> Row:
    values = results.series(figure.name)
    low = min(values) if values else None
    high = max(values) if values else None
    median = statistics.median(values) if values else None
    ceiling = results.median(figure.ceiling) if figure.ceiling else None
    ratio = median / ceiling if median is not None and ceiling else None
    met = None
    if figure.target is not None:
        compared = ratio if figure.ceiling else median
        if compared is not None:
            operator, bound = figure.target
            met = compared >= bound if operator == ">=" else compared < bound
    return Row(figure, low, median, high, ceiling, ratio, met)


def describe_target(figure: Figure) -> str:
    if figure.target is None:
        return "—"
    operator, bound = figure.target
    symbol = "≥" if operator == ">=" else "<"
    if figure.ceiling:
        return f"{symbol} {bound:.2f}×"
    return f"{symbol} {format_value(bound, figure.unit)} {figure.unit}"


def describe_met(row: Row) -> str:
    if row.met is None:
        return "—" if row.figure.target is None else "no value"
    return "met" if row.met else "not met"


def describe_ratio(row: Row) -> str:
    if row.ratio is None:
        return "—"
    return f"{row.ratio:.2f}× {FIGURES_BY_NAME[row.figure.ceiling].short}"


def markdown_table(results: Results, figures: list, with_ratio: bool) -> list:
    header = "| figure | unit | min | median | max |"
    rule = "|---|---|---:|---:|---:|"
    if with_ratio:
        header += " ceiling (median) | ratio | target | met |"
        rule += "---:|---:|---|---|"
    lines = [header, rule]
    for figure in figures:
        if figure.name not in results.values and figure.measurement not in results.measured:
            continue
        row = evaluate(results, figure)
        line = (f"| {figure.label} | {figure.unit} | {format_value(row.low, figure.unit)} | "
                f"{format_value(row.median, figure.unit)} | "
                f"{format_value(row.high, figure.unit)} |")
        if with_ratio:
            ceiling_unit = FIGURES_BY_NAME[figure.ceiling].unit if figure.ceiling else ""
            line += (f" {format_value(row.ceiling, ceiling_unit)} | {describe_ratio(row)} | "
                     f"{describe_target(figure)} | {describe_met(row)} |")
        lines.append(line)
    return lines


def describe_machine(meta: dict) -> str:
    machine = meta.get("machine") or {}
    return (f"{machine.get('cores', '?')} cores ({machine.get('cpu', 'unknown CPU')}), "
            f"{machine.get('memory', '?')} memory, Linux {machine.get('kernel', '?')}; "
            f"data directory on {machine.get('filesystem', '?')}")


def plural(count, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def count_text(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def paragraph(text: str) -> list:
    """Wraps prose at 100 columns, as the hand-written parts of the page are."""
    return textwrap.wrap(text, width=100, break_long_words=False, break_on_hyphens=False)


def docs_block(results: Results) -> str:
    meta = results.meta
    options = meta.get("options") or {}
    versions = meta.get("versions") or {}
    lines = [BEGIN_MARKER,
             "<!-- Written by scripts/bench.sh (bench/report.py); edits inside this block are "
             "lost on the next run. -->", ""]

    if options.get("quick"):
        lines += paragraph("**Quick run (`--quick`): 1-second measurements that only show that "
                           "the script works. These are not benchmark figures.**") + [""]

    lines += paragraph(
        f"Measured {meta.get('date', '?')} on {describe_machine(meta)}. "
        f"Commit `{meta.get('commit', '?')}`. Rerun with `{meta.get('command', '?')}`.")
    lines += [""]
    lines += paragraph(
        f"Load: wrk with {options.get('wrk_threads', '?')} threads and "
        f"{options.get('connections', '?')} connections, {options.get('warmup', '?')} s of "
        f"warm-up, then {options.get('duration', '?')} s per measurement; "
        f"{plural(options.get('runs', '?'), 'run')}, each figure as min / median / max over "
        f"the runs and each ratio of the medians. The fixed-rate latency run sends the mixed "
        f"workload with keyward-loadgen at {count_text(options.get('latency_rate'))} req/s for "
        f"{options.get('latency_seconds', '?')} s, timing each request from its scheduled send "
        f"time. The idle-connections run holds "
        f"{count_text(options.get('idle_connections'))} keep-alive connections open during the "
        f"KV read. AppRole logins take {count_text(options.get('approle_roles'))} roles in "
        f"turn, as services with a role each would. Versions: "
        f"{', '.join(f'{name} {version}' for name, version in sorted(versions.items()))}.")

    lines += [
        "",
        "Ceilings, measured in the same run on the same machine:",
        "",
        *markdown_table(results, CEILINGS, with_ratio=False),
        "",
        "keyward (`keyward server -dev`, release build), compared with its ceiling:",
        "",
        *markdown_table(results, WORKLOADS, with_ratio=True),
    ]

    if any(figure.measurement in results.measured for figure in SCALE):
        lines += [""]
        lines += paragraph(
            f"Scale, once after the runs: {count_text(options.get('scale_secrets'))} secrets "
            f"of 1 KiB and {count_text(options.get('scale_leases'))} live database leases "
            f"stored, then the KV workloads "
            f"{plural(options.get('scale_repeats', '?'), 'time')} (min / median / max of "
            f"those). Ratios compare with the same workload before the store was loaded. The "
            f"peak RSS counts from the start of this step. Database growth counts the SQLite "
            f"file and its WAL, including the audit records of the writes.")
        lines += ["", *markdown_table(results, SCALE, with_ratio=True)]

    if results.failures:
        lines += ["", "Failed measurements:", ""]
        lines += [f"- {name} (run {run}): {error}" for name, run, error in results.failures]
    lines += ["", END_MARKER]
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if begin != -1 and end != -1 and end > begin:
        after = text[end + len(END_MARKER):]
        if after.startswith("\n"):
            after = after[1:]
        return text[:begin] + block + after
    if begin != -1 or end != -1:
        raise ValueError(f"only one of {BEGIN_MARKER} and {END_MARKER} is present")
    # No markers yet: insert after the title and the first paragraph.
    title_end = text.find("\n\n")
    paragraph_end = text.find("\n\n", title_end + 2) if title_end != -1 else -1
    if paragraph_end == -1:
        return text.rstrip("\n") + "\n\n" + block
    return text[:paragraph_end + 2] + block + "\n" + text[paragraph_end + 2:]


def print_summary(results: Results):
    rows = [evaluate(results, figure) for figure in WORKLOADS + SCALE
            if figure.name in results.values or figure.measurement in results.measured]
    ceilings = [evaluate(results, figure) for figure in CEILINGS
                if figure.name in results.values]
    print("ceilings (median):")
    for row in ceilings:
        print(f"  {row.figure.label:<58} {format_value(row.median, row.figure.unit):>10} "
              f"{row.figure.unit}")
    print("keyward (median):")
    for row in rows:
        ratio = describe_ratio(row) if row.ratio is not None else ""
        target = describe_target(row.figure) if row.figure.target else ""
        print(f"  {row.figure.label:<58} {format_value(row.median, row.figure.unit):>10} "
              f"{row.figure.unit:<9} {ratio:<24} {target:<10} {describe_met(row)}")
    if results.failures:
        print("failed measurements:")
        for name, run, error in results.failures:
            print(f"  {name} (run {run}): {error}")


def load(path: str) -> list:
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON: {error}") from error
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON-lines file written by scripts/bench.sh")
    parser.add_argument("--docs", metavar="FILE",
                        help="Markdown file whose generated block is replaced")
    arguments = parser.parse_args()

    try:
        results = Results(load(arguments.results))
    except (OSError, ValueError) as error:
        print(f"report.py: {error}", file=sys.stderr)
        return 2

    print_summary(results)

    if arguments.docs:
        try:
            with open(arguments.docs, encoding="utf-8") as file:
                text = file.read()
            text = replace_block(text, docs_block(results))
            with open(arguments.docs, "w", encoding="utf-8") as file:
                file.write(text)
        except (OSError, ValueError) as error:
            print(f"report.py: cannot update {arguments.docs}: {error}", file=sys.stderr)
            return 2
        print(f"wrote the generated block of {arguments.docs}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
