"""Fuzz every decoder with atheris (libFuzzer, coverage-guided) for N seconds each.

    pip install atheris                                   # dev extra; wheels for CPython 3.11 on x86-64 Linux
    python tests/fuzz/run.py --seconds 30                 # all targets, one after another
    python tests/fuzz/run.py --seconds 300 --targets mp4  # one target, longer

Each target runs in its own process (libFuzzer owns the process and exits on
a crash), seeded from `fuzz_corpus.py`, with only `afd_async` modules instrumented
for coverage. Crashing inputs land in `--out/crashes/<target>/` (replay one
with `python tests/fuzz/run.py --replay FILE --targets T`); the grown corpus
in `--out/corpus/<target>/`. Prints one row per target: seconds, executions,
exec/s, coverage (libFuzzer `cov`), crashes.

Why not from pytest: a useful fuzz run takes minutes per target; pytest runs
the same entry functions over the seeds instead (`test_harnesses.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _child(target: str, seconds: int, out: Path, rss_limit_mb: int) -> None:
    """Run inside the fuzz process: instrument, seed, hand over to libFuzzer."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["afd_async"]):
        import fuzz_targets  # noqa: F401 - imports (and instruments) the decoders
    from fuzz_corpus import seeds

    corpus = out / "corpus" / target
    crashes = out / "crashes" / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(s)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/",
            f"-rss_limit_mb={rss_limit_mb}", "-print_final_stats=1", "-max_len=65536"]
    fn = fuzz_targets.TARGETS[target]

    def guarded(data: bytes) -> None:
        """Save the input ourselves before re-raising: with torch loaded, libFuzzer's own crash
        dump was seen to die on a SIGALRM (rc -14) before writing its artifact."""
        try:
            fn(data)
        except BaseException:
            (crashes / f"crash-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
            raise

    atheris.Setup(args, guarded)
    atheris.Fuzz()


def _replay(target: str, path: Path) -> None:
    sys.path.insert(0, str(HERE))
    from fuzz_targets import TARGETS

    TARGETS[target](path.read_bytes())
    print(f"{path}: no error")


def _stat(text: str, name: str) -> str:
    m = re.findall(rf"stat::{name}:\s*(\d+)", text)
    return m[-1] if m else "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=30, help="fuzzing time per target")
    p.add_argument("--targets", nargs="*", default=None, help="targets to fuzz (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "fuzz", help="corpus and crash directory")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="libFuzzer memory cap: beyond it is a crash")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--replay", type=Path, help="run one saved input through the (single) target and exit")
    a = p.parse_args()
    if a.child:
        _child(a.child, a.seconds, a.out, a.rss_limit_mb)
        return 0
    sys.path.insert(0, str(HERE))
    from fuzz_targets import TARGETS

    names = a.targets or sorted(TARGETS)
    if a.replay:
        _replay(names[0], a.replay)
        return 0
    rows, failed = [], 0
    for name in names:
        t0 = time.monotonic()
        log = a.out / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            rc = subprocess.run([sys.executable, __file__, "--child", name, "--seconds", str(a.seconds),
                                 "--out", str(a.out), "--rss-limit-mb", str(a.rss_limit_mb)],
                                stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
        text = log.read_text(errors="replace")
        crashes = sorted((a.out / "crashes" / name).glob("crash-*"))
        if rc != 0 or crashes:
            tb = text[text.find("=== Uncaught Python exception"):] if "Uncaught Python exception" in text else text[-2000:]
            print(f"--- {name}: rc {rc}, {len(crashes)} crash input(s) in {a.out / 'crashes' / name}\n{tb[:3000]}",
                  file=sys.stderr)
        cov = re.findall(r"\bcov: (\d+)", text)
        rows.append((name, time.monotonic() - t0, _stat(text, "number_of_executed_units"),
                     _stat(text, "average_exec_per_sec"), cov[-1] if cov else "?", len(crashes), rc))
        failed += rc != 0 or bool(crashes)
    print(f"{'target':<10} {'seconds':>8} {'execs':>10} {'exec/s':>8} {'cov':>6} {'crashes':>8} {'rc':>4}")
    for name, secs, execs, rate, cov, n, rc in rows:
        print(f"{name:<10} {secs:>8.1f} {execs:>10} {rate:>8} {cov:>6} {n:>8} {rc:>4}")
    if failed:
        print(f"crash inputs and logs under {a.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
