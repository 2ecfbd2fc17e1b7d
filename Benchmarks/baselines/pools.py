#!/usr/bin/env python3
"""Python process-pool baseline for the swift-multiprocessing benchmark suite.

This script is the *Python reference point* that the Swift benchmark driver
compares the Swift library `swift-multiprocessing` against.  The driver runs it
once per measurement, e.g.

    python3 pools.py a-pool-map --workers 2 --jobs 2000000

and reads exactly ONE JSON object from the last line of stdout, e.g.

    {"scenario": "a-pool-map", "value": 5012345.6, "unit": "jobs/s",
     "jobs": 2000000, "workers": 2, "python": "3.11.7", ...}

Diagnostics go to stderr only.  A bad argument exits with status 2 (argparse),
a failed result check exits with status 1.

Scenarios (all accept --workers N, default 2, and --jobs M, default per
scenario).  Unless noted otherwise the pool is created and warmed up with one
trivial job first, and only the work after that is timed (time.perf_counter):

  a-pool-map          multiprocessing.Pool(N).map(inc, range(M)) with the
                      DEFAULT chunksize (CPython picks ceil(M / (4 * N))).
                      Throughput of bulk fine-grained work.   Default M = 2e6.
                      value: jobs/s
  a-ppe-map-1         concurrent.futures.ProcessPoolExecutor(N).map(inc,
                      range(M), chunksize=1), consumed with list().  One IPC
                      round trip per job: per-job overhead.   Default M = 2e4.
                      value: jobs/s
  a-ppe-map-1000      As a-ppe-map-1 with chunksize=1000.     Default M = 2e6.
                      value: jobs/s
  b-ppe-submit        M individual executor.submit(inc, i) calls, all futures
                      kept, then concurrent.futures.wait() for all of them.
                      Timed from the first submit until all are done.  Cost of
                      the future-per-job API.                 Default M = 2e5.
                      value: jobs/s
  c-ppe-latency       One job in flight at a time: submit(inc, i).result(),
                      M times after 100 untimed warm-up round trips.  Each
                      round trip is timed individually.       Default M = 2000.
                      value: p50 in microseconds; also p99_us, mean_us,
                      min_us, max_us.
  e-ppe-payload-in    M jobs whose argument is a --mib MiB bytes object
                      (default 8 MiB); the job returns len(data).  Submitted
                      with executor.map(length, payloads) and consumed.
                      Measures argument pickling/transfer.    Default M = 64.
                      value: MiB sent per second (MiB/s)
  e-ppe-payload-out   M jobs whose argument is the size in bytes; the job
                      returns bytes(size) (--mib MiB, default 8).  Measures
                      result pickling/transfer.               Default M = 64.
                      value: MiB received per second (MiB/s)
  f-ppe-startup-spawn Time from constructing ProcessPoolExecutor(N,
  f-ppe-startup-fork  mp_context=multiprocessing.get_context("spawn"/"fork"))
                      to having the result of the first trivial job inc(1).
                      No warm-up (start-up *is* the measurement).  Here --jobs
                      is the number of independent start-ups measured in this
                      process (fresh executor each time; default 1); value is
                      their median and every sample is listed in samples_ms.
                      value: ms

Scenarios a-e use the platform's default multiprocessing start method (fork
on Linux with Python 3.11); the method actually used is reported in the JSON
as "start_method".

Job functions are module-level (so they pickle by reference) and all work is
under `if __name__ == "__main__":`, so the script also works with the "spawn"
start method, which re-imports this module in every worker.

Only the Python standard library is used.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time

MIB = 1024 * 1024


# --------------------------------------------------------------------------
# Job functions.  Module level so that workers can unpickle them by name.
# --------------------------------------------------------------------------

def inc(x):
    """The trivial job: the work itself is negligible, so the measurement is
    dominated by the pool's scheduling and IPC overhead."""
    return x + 1


def length(data):
    """Payload-in job: receive a large bytes object, return only its length."""
    return len(data)


def make_bytes(size):
    """Payload-out job: return a zero-filled bytes object of `size` bytes."""
    return bytes(size)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def log(msg):
    """Diagnostics go to stderr; stdout is reserved for the JSON line."""
    print(f"[pools.py] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    """Abort with a clear message and a non-zero status (result check failed)."""
    print(f"pools.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def percentile(sorted_values, p):
    """Nearest-rank percentile (p in (0, 100]) of an already sorted list.

    Nearest rank always returns an actually observed sample, which is what we
    want for latency reporting."""
    n = len(sorted_values)
    rank = max(1, -(-p * n // 100))  # ceil(p * n / 100), at least 1
    return sorted_values[int(rank) - 1]


def warm_up_executor(executor):
    """Run one trivial job through the executor before timing starts.

    With the fork start method ProcessPoolExecutor forks all N workers on the
    first submit; with spawn/forkserver (3.9+) it starts workers on demand."""
    if executor.submit(inc, 0).result() != 1:
        fail("warm-up job returned a wrong result")


# --------------------------------------------------------------------------
# Scenarios.  Each returns a dict of result fields; main() adds the common
# ones (scenario, jobs, workers, python, ...) and prints the JSON line.
# Every pool is shut down (the `with` block exits, joining the workers)
# before the function returns, i.e. before anything is printed.
# --------------------------------------------------------------------------

def scenario_a_pool_map(workers, jobs, _args):
    with multiprocessing.Pool(workers) as pool:
        if pool.apply(inc, (0,)) != 1:                 # warm-up, untimed
            fail("warm-up job returned a wrong result")
        t0 = time.perf_counter()
        result = pool.map(inc, range(jobs))            # default chunksize
        seconds = time.perf_counter() - t0
        # Graceful shutdown: Pool.__exit__ would only terminate() the workers.
        pool.close()
        pool.join()
    if len(result) != jobs or result[-1] != jobs:
        fail(f"a-pool-map: bad result (len={len(result)}, last={result[-1]!r})")
    return {"value": jobs / seconds, "unit": "jobs/s", "seconds": seconds}


def _ppe_map(workers, jobs, chunksize):
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        warm_up_executor(executor)
        t0 = time.perf_counter()
        result = list(executor.map(inc, range(jobs), chunksize=chunksize))
        seconds = time.perf_counter() - t0
    if len(result) != jobs or result[-1] != jobs:
        fail(f"ppe map: bad result (len={len(result)}, last={result[-1]!r})")
    return {"value": jobs / seconds, "unit": "jobs/s", "seconds": seconds,
            "chunksize": chunksize}


def scenario_a_ppe_map_1(workers, jobs, _args):
    return _ppe_map(workers, jobs, 1)


def scenario_a_ppe_map_1000(workers, jobs, _args):
    return _ppe_map(workers, jobs, 1000)


def scenario_b_ppe_submit(workers, jobs, _args):
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        warm_up_executor(executor)
        t0 = time.perf_counter()
        futures = [executor.submit(inc, i) for i in range(jobs)]
        done, not_done = concurrent.futures.wait(futures)
        seconds = time.perf_counter() - t0
    if not_done or len(done) != jobs:
        fail(f"b-ppe-submit: {len(not_done)} futures not done")
    for i, fut in enumerate(futures):                  # untimed check
        if fut.result() != i + 1:
            fail(f"b-ppe-submit: job {i} returned {fut.result()!r}")
    return {"value": jobs / seconds, "unit": "jobs/s", "seconds": seconds}


LATENCY_WARMUP_ROUND_TRIPS = 100


def scenario_c_ppe_latency(workers, jobs, _args):
    perf_counter = time.perf_counter
    samples = []
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        warm_up_executor(executor)
        for i in range(LATENCY_WARMUP_ROUND_TRIPS):    # untimed warm-up
            if executor.submit(inc, i).result() != i + 1:
                fail("c-ppe-latency: warm-up round trip returned a wrong result")
        for i in range(jobs):
            t0 = perf_counter()
            r = executor.submit(inc, i).result()
            t1 = perf_counter()
            if r != i + 1:                             # compared outside [t0, t1]
                fail(f"c-ppe-latency: job {i} returned {r!r}")
            samples.append((t1 - t0) * 1e6)
    samples.sort()
    return {"value": percentile(samples, 50), "unit": "us",
            "p99_us": percentile(samples, 99),
            "mean_us": statistics.fmean(samples),
            "min_us": samples[0], "max_us": samples[-1],
            "warmup_round_trips": LATENCY_WARMUP_ROUND_TRIPS}


def scenario_e_ppe_payload_in(workers, jobs, args):
    size = args.mib * MIB
    # ONE payload made with os.urandom (incompressible, not a special-cased
    # all-zero buffer) is created up front, untimed, and the SAME object is
    # passed to every job.  Reuse is fair: each job's arguments are pickled
    # separately, so all M jobs still ship the full `size` bytes over the pipe.
    payload = os.urandom(size)
    payloads = [payload] * jobs
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        warm_up_executor(executor)
        t0 = time.perf_counter()
        result = list(executor.map(length, payloads))
        seconds = time.perf_counter() - t0
    if len(result) != jobs or any(r != size for r in result):
        fail("e-ppe-payload-in: a job reported a wrong payload length")
    total_mib = jobs * size / MIB
    return {"value": total_mib / seconds, "unit": "MiB/s", "seconds": seconds,
            "mib": args.mib, "total_mib": total_mib,
            "payload": "os.urandom, one object reused for every job"}


def scenario_e_ppe_payload_out(workers, jobs, args):
    size = args.mib * MIB
    received = 0
    count = 0
    with concurrent.futures.ProcessPoolExecutor(workers) as executor:
        warm_up_executor(executor)
        t0 = time.perf_counter()
        # Consumed one result at a time (not list()) so that we do not hold
        # M * size bytes at once; len() on a bytes object is O(1).
        for data in executor.map(make_bytes, [size] * jobs):
            if len(data) != size:
                fail(f"e-ppe-payload-out: got {len(data)} bytes, expected {size}")
            received += len(data)
            count += 1
            del data
        seconds = time.perf_counter() - t0
    if count != jobs:
        fail(f"e-ppe-payload-out: got {count} results, expected {jobs}")
    total_mib = received / MIB
    return {"value": total_mib / seconds, "unit": "MiB/s", "seconds": seconds,
            "mib": args.mib, "total_mib": total_mib,
            "payload": "bytes(size) created in the worker"}


def _ppe_startup(workers, repeats, method):
    ctx = multiprocessing.get_context(method)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as executor:
            r = executor.submit(inc, 1).result()
            t1 = time.perf_counter()                   # shutdown is not timed
        if r != 2:
            fail(f"startup ({method}): first job returned {r!r}")
        samples.append((t1 - t0) * 1e3)
    return {"value": statistics.median(samples), "unit": "ms",
            "samples_ms": samples, "start_method": method}


def scenario_f_ppe_startup_spawn(workers, jobs, _args):
    return _ppe_startup(workers, jobs, "spawn")


def scenario_f_ppe_startup_fork(workers, jobs, _args):
    return _ppe_startup(workers, jobs, "fork")


# name -> (function, default --jobs, one-line description)
SCENARIOS = {
    "a-pool-map": (scenario_a_pool_map, 2_000_000,
                   "multiprocessing.Pool.map(inc, range(M)), default chunksize [jobs/s]"),
    "a-ppe-map-1": (scenario_a_ppe_map_1, 20_000,
                    "ProcessPoolExecutor.map(inc, range(M), chunksize=1) [jobs/s]"),
    "a-ppe-map-1000": (scenario_a_ppe_map_1000, 2_000_000,
                       "ProcessPoolExecutor.map(inc, range(M), chunksize=1000) [jobs/s]"),
    "b-ppe-submit": (scenario_b_ppe_submit, 200_000,
                     "M x submit(inc, i), then wait() for all [jobs/s]"),
    "c-ppe-latency": (scenario_c_ppe_latency, 2_000,
                      "submit(inc, i).result() round trip, one at a time [p50 us]"),
    "e-ppe-payload-in": (scenario_e_ppe_payload_in, 64,
                         "M jobs each receiving a --mib MiB bytes argument [MiB/s]"),
    "e-ppe-payload-out": (scenario_e_ppe_payload_out, 64,
                          "M jobs each returning a --mib MiB bytes result [MiB/s]"),
    "f-ppe-startup-spawn": (scenario_f_ppe_startup_spawn, 1,
                            "spawn-context executor creation to first result; "
                            "M = repeats [median ms]"),
    "f-ppe-startup-fork": (scenario_f_ppe_startup_fork, 1,
                           "fork-context executor creation to first result; "
                           "M = repeats [median ms]"),
}

PAYLOAD_SCENARIOS = ("e-ppe-payload-in", "e-ppe-payload-out")
DEFAULT_MIB = 8


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv):
    listing = "\n".join(
        f"  {name:<20} {desc} (default --jobs {default:,})"
        for name, (_fn, default, desc) in SCENARIOS.items())
    parser = argparse.ArgumentParser(
        prog="pools.py",
        description="Python process-pool baseline for the swift-multiprocessing "
                    "benchmark suite. Prints one JSON object on the last line "
                    "of stdout; diagnostics go to stderr.",
        epilog="scenarios:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO",
                        help="which measurement to run (see list below)")
    parser.add_argument("--workers", type=positive_int, default=2, metavar="N",
                        help="number of worker processes (default 2)")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="M",
                        help="number of jobs (default depends on the scenario; "
                             "for f-* scenarios: number of start-ups measured)")
    parser.add_argument("--mib", type=positive_int, default=None, metavar="S",
                        help=f"payload size per job in MiB, e-* scenarios only "
                             f"(default {DEFAULT_MIB})")
    args = parser.parse_args(argv)
    if args.mib is not None and args.scenario not in PAYLOAD_SCENARIOS:
        parser.error(f"--mib only applies to {' and '.join(PAYLOAD_SCENARIOS)}")
    if args.mib is None:
        args.mib = DEFAULT_MIB
    if args.jobs is None:
        args.jobs = SCENARIOS[args.scenario][1]
    return args


def main(argv=None):
    args = parse_args(argv)
    fn = SCENARIOS[args.scenario][0]
    start_method = multiprocessing.get_start_method()
    log(f"scenario={args.scenario} workers={args.workers} jobs={args.jobs} "
        f"python={platform.python_version()} default start method={start_method}")
    fields = fn(args.workers, args.jobs, args)
    record = {"scenario": args.scenario,
              "value": fields.pop("value"),
              "unit": fields.pop("unit"),
              "jobs": args.jobs,
              "workers": args.workers,
              "python": platform.python_version(),
              "start_method": start_method}
    record.update(fields)  # scenario-specific extras (may override start_method)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
