"""`python -m afd_async.metrics render | check`: the generated docs tables and the container health check.

Why here and not in `afd`: the health check runs inside every role's container (`docker-compose.yml`
healthcheck) and must stay cheap, and `render` regenerates `docs/METRICS.md` and the README table, which
`tests/ops/test_metrics.py` keeps equal to `render_markdown()`.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from typing import Optional, Sequence

from afd_async.metrics.declare import COMMON_LABELS, ROLES, SPECS
from afd_async.metrics.server import DEFAULT_METRICS_PORTS, port_block


def render_markdown() -> str:
    """The metric and port tables of `docs/METRICS.md` (a test keeps the committed file equal to this)."""
    out = [
        "# Metrics", "",
        "Generated from `afd_async/metrics/catalogue.py` by `python -m afd_async.metrics render > docs/METRICS.md`; do not edit.",
        "", f"Every series carries `{'`, `'.join(COMMON_LABELS)}` unless marked *(no role labels)*; "
        "counters also export `<name minus _total>_created`, histograms `_bucket`, `_sum`, `_count`.",
        "", "## Ports", "", "| Role | Command | Default metrics port | Replica block (host networking) |",
        "|---|---|---|---|",
    ]
    for role, port in DEFAULT_METRICS_PORTS.items():
        lo, hi = port_block(role)
        out.append(f"| {role} | `afd {role}` | {port} | {lo}–{hi} |")
    group = None
    for s in SPECS:
        if s.group != group:
            group = s.group
            out += ["", f"## {group}", "", "| Metric | Type | Labels | Roles | Meaning |", "|---|---|---|---|---|"]
        labels = ", ".join(f"`{lbl}`" + (f" ({'/'.join(s.values[lbl])})" if lbl in s.values else "") for lbl in s.labels)
        if not s.common:
            labels += " *(no role labels)*"
        roles = "all" if s.roles == ROLES else ", ".join(s.roles)
        out.append(f"| `{s.name}` | {s.kind} | {labels or '–'} | {roles} | {s.help.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def _check(port: Optional[int], port_file: Optional[str], host: str, timeout_s: float) -> int:
    """Container health check: 0 when this container's metrics endpoint answers."""
    if port is None:
        path = port_file or os.environ.get("AFD_METRICS_PORT_FILE", "/tmp/afd-metrics.port")
        try:
            port = int(open(path).read().strip())
        except (OSError, ValueError) as e:
            print(f"no metrics port yet ({path}: {e})", file=sys.stderr)
            return 1
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as r:
            return 0 if r.status == 200 and b"afd_role_info" in r.read() else 1
    except OSError as e:
        print(f"metrics endpoint {host}:{port} not answering: {e}", file=sys.stderr)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m afd_async.metrics render` prints docs/METRICS.md; `... check [--port N]` is the health check."""
    parser = argparse.ArgumentParser(prog="python -m afd_async.metrics", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("render", help="print the metric tables (docs/METRICS.md)")
    chk = sub.add_parser("check", help="exit 0 if this container's metrics endpoint answers")
    chk.add_argument("--port", type=int, default=None, help="default: the port in $AFD_METRICS_PORT_FILE")
    chk.add_argument("--port-file", default=None)
    chk.add_argument("--host", default="127.0.0.1")
    chk.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.cmd == "render":
        sys.stdout.write(render_markdown())
        return 0
    return _check(args.port, args.port_file, args.host, args.timeout)
