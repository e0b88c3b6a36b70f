"""Replay throughput (PairWriter → PairReader) against `redis-benchmark` on the same server, in one run.

What a pair costs Redis: its ~100 KB payload written once and read once. The
honest C-client equivalent is therefore one SET and one GET of a value of the
same size, with the same pipelining and one connection, as ours:

    redis-benchmark -c 1 -P 16 -d 102400 -t set,get     # our batch: 16 pairs

and a pair takes the time of one SET plus one GET, so the bound in pairs/s is
`1 / (1/SET_rps + 1/GET_rps)`. Ours moves the same payload in rounds of 16 pairs:
`write_many` (one MULTI/EXEC round trip), `read` (XREADGROUP, the dedupe script),
`ack` (the owner-checked ack script), and `trim_acked` every 8 rounds (the
feeder trims on a timer) so memory stays bounded. It includes msgpack encode /
decode of the tensors and the `Pair` checks; building the round's `Pair`s is
the actor's work and stays off the clock. CPU per pair (this process, and the
redis-server's from /proc under ours and under redis-benchmark) says what bounds
the ratio: one round trip at a time, a pair costs at least the sum of the two. A third loop (`raw_py`: XADD +
XREADGROUP + XACK of pre-built bytes through the same pipeline, no codec) shows
what a Python client gets without our code, and a fourth runs redis-benchmark
on the stream commands themselves (XADD -P 16, XRANGE COUNT 16) to show what
streams cost the server over plain strings. The loops alternate `--repeats`
times so machine load hits all alike; medians are reported.

    python benchmarks/bench_replay.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import time
import timeit
from collections import Counter
from dataclasses import replace
from typing import Any, Optional

import redis

from afd_async.replay import PairReader, PairWriter, trim_acked
from afd_async.replay.examples import make_pair
from afd_async.replay.pair import decode_meta, decode_pair, encode_pair
from afd_async.store.connect import READ_BUFFER_BYTES
from afd_async.store.pipeline import execute
from afd_async.store.redis_server import RedisServer

PAYLOAD = 100 << 10  # bytes of tensors per pair (redis-benchmark -d)
CHUNK = 16  # pairs per round trip (redis-benchmark -P)
TRIM_EVERY = 8  # rounds


def run_ours(r: redis.Redis, seconds: float, stages: Optional[Counter[str]] = None) -> float:
    """Pairs/s through PairWriter.write_many → PairReader.read → ack (and trim_acked every TRIM_EVERY
    rounds), for about `seconds` of their time; adds each stage's seconds to `stages` (write, read, ack,
    trim, and client_cpu: this process's CPU seconds in them). The pairs of a round are built before its
    clock starts: making the record is the actor's work, not the replay's."""
    pairs = [make_pair(i, payload_bytes=PAYLOAD) for i in range(CHUNK)]
    stream = f"bench:ours:{time.monotonic_ns()}"
    w = PairWriter(r, stream=stream, blob_ttl_s=60)
    rd = PairReader(r, stream=stream, group="g", consumer="c")
    clock: Counter[str] = Counter() if stages is None else stages
    done = rounds = 0
    spent = 0.0
    while spent < seconds:
        batch = [replace(p, pair_id=f"p{done + i}") for i, p in enumerate(pairs)]  # fresh ids: no dedupe
        c1 = time.process_time()
        t1 = time.perf_counter()
        w.write_many(batch)
        t2 = time.perf_counter()
        got: list[Any] = []
        while len(got) < CHUNK:
            got += rd.read(count=CHUNK - len(got), block_ms=1000)
        t3 = time.perf_counter()
        rd.ack([sid for sid, _ in got])
        t4 = time.perf_counter()
        clock["write"] += t2 - t1
        clock["read"] += t3 - t2
        clock["ack"] += t4 - t3
        done += CHUNK
        rounds += 1
        if rounds % TRIM_EVERY == 0:
            trim_acked(r, stream)
            clock["trim"] += time.perf_counter() - t4
        spent += time.perf_counter() - t1
        clock["client_cpu"] += time.process_time() - c1
    clock["pairs"] += done
    r.delete(stream)
    return done / spent


def codec_us() -> dict[str, float]:
    """Client CPU per pair of the codec alone (no Redis): encode, decode of meta and tensors, in µs."""
    pair = make_pair(0, payload_bytes=PAYLOAD)
    meta, parts = encode_pair(pair)
    tensors = b"".join(parts)  # what the reader gets from hiredis
    n = 500
    out = {}
    for name, fn in (("encode", lambda: encode_pair(pair)), ("decode", lambda: decode_pair(decode_meta(meta), tensors))):
        out[name] = min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6
    return out


def run_raw_py(r: redis.Redis, seconds: float) -> float:
    """Pairs/s of pre-built payloads through XADD / XREADGROUP / XACK, pipelined as ours (no codec)."""
    payload = bytes(bytearray(range(256)) * (PAYLOAD // 256 + 1))[:PAYLOAD]
    stream = f"bench:raw:{time.monotonic_ns()}"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    done = rounds = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        execute(r, [["XADD", stream, "*", "p", payload]] * CHUNK)
        resp = r.xreadgroup("g", "c", {stream: ">"}, count=CHUNK)
        ids = [sid for sid, _ in resp[0][1]]
        r.xack(stream, "g", *ids)
        done += len(ids)
        rounds += 1
        if rounds % TRIM_EVERY == 0:
            r.xtrim(stream, minid=ids[-1])
    dt = time.perf_counter() - t0
    r.delete(stream)
    return done / dt


def server_cpu_s(r: redis.Redis) -> Optional[float]:
    """CPU seconds (user + system) the redis-server behind `r` has used; None where /proc cannot tell."""
    try:
        pid = int(r.info("server")["process_id"])
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, KeyError, ValueError, IndexError):
        return None


def redis_benchmark_cmd(port: int, n: int) -> list[str]:
    """The C-client baseline: SET and GET of a PAYLOAD-byte value, CHUNK-deep pipeline, one connection."""
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "1", "-P", str(CHUNK), "-d", str(PAYLOAD),
            "-n", str(n), "-t", "set,get", "--csv"]


def _rps(cmd: list[str], stdin: bytes | None = None) -> dict[str, float]:
    out = subprocess.run(cmd, check=True, capture_output=True, input=stdin, timeout=120).stdout.decode()
    return {row["test"].split()[0]: float(row["rps"]) for row in csv.DictReader(io.StringIO(out))}


def run_redis_benchmark(port: int, n: int) -> dict[str, float]:
    """Requests/s of SET and GET from `redis-benchmark` (keys: "SET", "GET")."""
    return _rps(redis_benchmark_cmd(port, n))


def run_redis_benchmark_streams(port: int, n: int) -> dict[str, float]:
    """The same C client on the stream commands we use, to show what streams cost the server:
    XADD of a PAYLOAD-byte field (CHUNK-deep pipeline) and XRANGE of CHUNK such entries per request.
    Keys: "XADD" (entries/s), "XRANGE" (entries/s)."""
    base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "1", "--csv"]
    key = f"bench:rb:{time.monotonic_ns()}"
    xadd = _rps([*base, "-P", str(CHUNK), "-n", str(n), "-x", "XADD", key, "MAXLEN", "~", "256", "*", "t"],
                stdin=b"a" * PAYLOAD)  # a C string: no NUL bytes
    xrange = _rps([*base, "-n", str(max(1, n // CHUNK)), "XRANGE", key, "-", "+", "COUNT", str(CHUNK)])
    return {"XADD": xadd["XADD"], "XRANGE": xrange["XRANGE"] * CHUNK}


def measure(seconds: float = 30.0, repeats: int = 3) -> dict[str, Any]:
    """Ours vs `redis-benchmark` on one private redis-server, each of 4 loops ~seconds/(4·repeats) per repeat.

    Returns:
        replay_ratio (pairs_per_s / baseline_pairs_per_s), pairs_per_s, baseline_pairs_per_s,
        set_rps, get_rps, raw_py_pairs_per_s, xadd_rps, xrange_entries_per_s, stream_c_pairs_per_s
        (the C client on XADD + XRANGE: what streams cost the server), ours_us_per_pair (wall µs per
        pair in write, read, ack, trim), client_cpu_us_per_pair (ours, this process), server_cpu_us_per_pair
        (redis-server CPU per pair: "ours", and "set_get" under redis-benchmark; None without /proc),
        codec_us_per_pair (client CPU of encode and decode alone),
        payload_bytes, chunk, baseline_command, repeats.
    """
    if shutil.which("redis-benchmark") is None:
        raise RuntimeError("redis-benchmark not found on PATH (it ships beside redis-server)")
    share = seconds / (4 * repeats)
    ours, raw_py, sets, gets, xadds, xranges = [], [], [], [], [], []
    stages: Counter[str] = Counter()
    server_cpu: Counter[str] = Counter()  # seconds: "ours" over stages["pairs"] pairs, "set_get" over set_get_n pairs
    set_get_n = 0
    with RedisServer() as server:
        r = redis.Redis(**server.client_kwargs(), socket_timeout=30, socket_read_size=READ_BUFFER_BYTES)
        run_ours(r, min(0.5, share))  # warm-up: imports, scripts, allocator
        first = run_redis_benchmark(server.port, 2000)
        n = max(1000, int(share / (1 / first["SET"] + 1 / first["GET"])))  # SET + GET of n values take ~share
        for _ in range(repeats):
            s0 = server_cpu_s(r)
            ours.append(run_ours(r, share, stages))
            s1 = server_cpu_s(r)
            rb = run_redis_benchmark(server.port, n)
            s2 = server_cpu_s(r)
            if s0 is not None and s1 is not None and s2 is not None:
                server_cpu["ours"] += s1 - s0
                server_cpu["set_get"] += s2 - s1
                set_get_n += n
            sets.append(rb["SET"])
            gets.append(rb["GET"])
            rs = run_redis_benchmark_streams(server.port, n)
            xadds.append(rs["XADD"])
            xranges.append(rs["XRANGE"])
            raw_py.append(run_raw_py(r, share))
        r.close()
    pairs = statistics.median(ours)
    set_rps, get_rps = statistics.median(sets), statistics.median(gets)
    baseline = 1.0 / (1.0 / set_rps + 1.0 / get_rps)
    xadd_rps, xrange_rps = statistics.median(xadds), statistics.median(xranges)
    return {
        "replay_ratio": pairs / baseline, "pairs_per_s": pairs, "baseline_pairs_per_s": baseline,
        "set_rps": set_rps, "get_rps": get_rps, "raw_py_pairs_per_s": statistics.median(raw_py),
        "xadd_rps": xadd_rps, "xrange_entries_per_s": xrange_rps,
        "stream_c_pairs_per_s": 1.0 / (1.0 / xadd_rps + 1.0 / xrange_rps),
        "ours_us_per_pair": {k: v / stages["pairs"] * 1e6 for k, v in stages.items()
                             if k not in ("pairs", "client_cpu")},
        "client_cpu_us_per_pair": stages["client_cpu"] / stages["pairs"] * 1e6,
        "server_cpu_us_per_pair": ({"ours": server_cpu["ours"] / stages["pairs"] * 1e6,
                                    "set_get": server_cpu["set_get"] / set_get_n * 1e6} if set_get_n else None),
        "codec_us_per_pair": codec_us(),
        "payload_bytes": PAYLOAD, "chunk": CHUNK, "repeats": repeats,
        "baseline_command": " ".join(redis_benchmark_cmd(0, n)).replace("-p 0", "-p PORT"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="total time of the measured loops")
    ap.add_argument("--repeats", type=int, default=3, help="alternations of the loops (median reported)")
    args = ap.parse_args()
    m = measure(args.seconds, args.repeats)
    print(f"baseline: {m['baseline_command']}")
    print(f"{'loop':>42} {'pairs/s':>9} {'GB/s':>6} {'÷ bound':>8}")
    rows = [("redis-benchmark SET", m["set_rps"]), ("redis-benchmark GET", m["get_rps"]),
            ("bound: 1 SET + 1 GET per pair", m["baseline_pairs_per_s"]),
            ("redis-benchmark XADD", m["xadd_rps"]), ("redis-benchmark XRANGE (entries)", m["xrange_entries_per_s"]),
            ("C client on streams: 1 XADD + 1/16 XRANGE", m["stream_c_pairs_per_s"]),
            ("raw_py: XADD/XREADGROUP/XACK", m["raw_py_pairs_per_s"]), ("ours: write_many/read/ack", m["pairs_per_s"])]
    for name, rate in rows:
        print(f"{name:>42} {rate:>9.0f} {rate * m['payload_bytes'] / 1e9:>6.2f} {rate / m['baseline_pairs_per_s']:>8.2f}")
    print("ours, wall µs per pair: " + ", ".join(f"{k} {v:.1f}" for k, v in m["ours_us_per_pair"].items())
          + f" (total {1e6 / m['pairs_per_s']:.1f}); codec alone: "
          + ", ".join(f"{k} {v:.1f}" for k, v in m["codec_us_per_pair"].items()))
    cpu = m["server_cpu_us_per_pair"]
    print(f"CPU µs per pair: ours client {m['client_cpu_us_per_pair']:.1f}"
          + (f", ours redis-server {cpu['ours']:.1f}; redis-server under redis-benchmark SET+GET {cpu['set_get']:.1f}"
             if cpu else "") + f"; the bound's wall {1e6 / m['baseline_pairs_per_s']:.1f}")
    print(f"replay_ratio = {m['replay_ratio']:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
