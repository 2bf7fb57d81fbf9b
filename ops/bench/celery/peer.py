"""Measures Celery the way bench-runs measures AntCode; prints one JSON object.

Usage: python peer.py LATENCY_N THROUGHPUT_N SEQUENTIAL_N [PRODUCERS]
(the worker is started by bench-runs with the same number of processes as AntCode's slots; the
throughput phase submits from PRODUCERS threads, as many as bench-runs uses against AntCode).
"""
import json
import os
import sys
import threading
import time

from tasks import noop


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def machine_cpu_ms():
    """CPU time the whole machine spent so far (all cores, user + system), as bench-runs reads it."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6) if i < len(ticks))  # not steal
    return busy * 1000.0 / os.sysconf("SC_CLK_TCK")


def machine_switches():
    """Context switches on the whole machine so far (`ctxt` in /proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return float("nan")


def main():
    lat_n, tp_n, seq_n = (int(a) for a in sys.argv[1:4])
    producers = max(1, int(sys.argv[4])) if len(sys.argv) > 4 else 1
    for _ in range(10):
        noop.apply_async().get(timeout=30)
    lat = []
    for _ in range(lat_n):
        t = time.perf_counter()
        noop.apply_async().get(timeout=30)
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    for _ in range(seq_n):
        noop.apply_async().get(timeout=30)
    seq_s = time.perf_counter() - t
    t = time.perf_counter()
    cpu, switches = machine_cpu_ms(), machine_switches()
    shares = [tp_n // producers + (i < tp_n % producers) for i in range(producers)]
    submitted = [[] for _ in shares]

    def produce(i):
        submitted[i].extend(noop.delay() for _ in range(shares[i]))

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for t_ in threads:
        t_.start()
    for t_ in threads:
        t_.join()
    results = [r for rs in submitted for r in rs]
    if len(results) != tp_n:
        raise SystemExit("submitted %d of %d" % (len(results), tp_n))
    for r in results:
        r.get(timeout=300)
    tp_s = time.perf_counter() - t
    cpu_ms_per_run = (machine_cpu_ms() - cpu) / tp_n
    switches_per_run = (machine_switches() - switches) / tp_n
    print(json.dumps({"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "sequential_s": seq_s, "throughput_s": tp_s, "cpu_ms_per_run": cpu_ms_per_run, "switches_per_run": switches_per_run}))


if __name__ == "__main__":
    main()
