"""Times the Rust `_base64` built into a 3.13 interpreter against the C
`binascii` path that the standard library's base64 module takes.

pyperf-style, inside one interpreter: for every (operation, size,
implementation) the loop count is calibrated so that one sample lasts at
least --min-sample seconds, one warm-up sample is discarded, and --samples
samples follow; the table gives the median time per call, the spread
(standard deviation as a percentage of the mean, and the fastest/slowest
samples), the throughput over the raw bytes, and the speed of Rust relative
to binascii (above 1: Rust is faster).

encode: _base64.standard_b64encode(data) vs binascii.b2a_base64(data, newline=False)
decode: _base64.standard_b64decode(enc) vs binascii.a2b_base64(enc) (what
base64.standard_b64decode calls) and binascii.a2b_base64(enc, strict_mode=True)
(the same validation as the Rust decoder).
"""
import argparse
import binascii
import random
import statistics
import sys
import sysconfig
import time

import _base64

SIZES = [("64 B", 64), ("4 KiB", 4 << 10), ("1 MiB", 1 << 20), ("16 MiB", 16 << 20)]


def cases(data, enc):
    return [
        ("encode", "binascii", lambda: binascii.b2a_base64(data, newline=False)),
        ("encode", "rust", lambda: _base64.standard_b64encode(data)),
        ("decode", "binascii", lambda: binascii.a2b_base64(enc)),
        ("decode", "rust", lambda: _base64.standard_b64decode(enc)),
        ("decode", "binascii strict", lambda: binascii.a2b_base64(enc, strict_mode=True)),
    ]


def sample(f, loops):
    t0 = time.perf_counter_ns()
    for _ in range(loops):
        f()
    return (time.perf_counter_ns() - t0) / loops


def calibrate(f, min_sample):
    loops = 1
    while True:
        t = sample(f, loops) * loops
        if t >= min_sample * 1e9 or loops >= 1 << 24:
            return loops
        loops *= 2 if t * 2 >= min_sample * 1e9 else 10


def bench(f, samples, min_sample):
    loops = calibrate(f, min_sample)
    sample(f, loops)  # warm-up
    times = [sample(f, loops) for _ in range(samples)]
    return loops, times


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--min-sample", type=float, default=0.02, help="seconds per sample, at least")
    args = ap.parse_args()

    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    print(f"python {sys.version.split()[0]}{' free-threaded' if ft else ''}, "
          f"_base64 {'built in' if '_base64' in sys.builtin_module_names else _base64.__file__}, "
          f"{args.samples} samples of >= {args.min_sample * 1e3:g} ms after 1 warm-up each")
    head = f"{'op':<7}{'size':>7}  {'impl':<16}{'median':>10}{'spread':>8}{'min..max':>22}{'MB/s':>9}{'vs binascii':>13}"
    print(head)
    print("-" * len(head))
    rng = random.Random(4)
    for label, n in SIZES:
        data = rng.randbytes(n)
        enc = binascii.b2a_base64(data, newline=False)
        assert _base64.standard_b64encode(data) == enc and _base64.standard_b64decode(enc) == data
        medians = {}
        for op, impl, f in cases(data, enc):
            loops, times = bench(f, args.samples, args.min_sample)
            med = statistics.median(times)
            medians[op, impl] = med
            spread = 100 * statistics.stdev(times) / statistics.fmean(times)
            ratio = medians[op, "binascii"] / med
            print(f"{op:<7}{label:>7}  {impl:<16}{human(med):>10}{spread:>7.1f}%"
                  f"{human(min(times)) + ' .. ' + human(max(times)):>22}"
                  f"{n / med * 1e3:>9.0f}"
                  f"{'' if impl == 'binascii' else f'{ratio:.2f}x':>13}")


if __name__ == "__main__":
    main()
