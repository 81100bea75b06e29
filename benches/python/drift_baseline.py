#!/usr/bin/env python3
"""Times scipy/numpy (and Evidently, when installed) on the drift benchmark's data.

Usage: drift_baseline.py DIR   — DIR holds reference.f64, current.f64 (little-endian float64),
ref_codes.u32 and cur_codes.u32 (category codes) and edges.f64 (the reference's bin edges).
Prints one JSON object: statistic -> {"seconds": best of 3, "value": result}.
"""
import json
import pathlib
import sys
import time

import numpy as np
from scipy import stats
from scipy.spatial import distance


def best_of(repeats, fn):
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return {"seconds": best, "value": float(value)}


def main():
    d = pathlib.Path(sys.argv[1])
    ref = np.fromfile(d / "reference.f64", dtype="<f8")
    cur = np.fromfile(d / "current.f64", dtype="<f8")
    edges = np.concatenate(([-np.inf], np.fromfile(d / "edges.f64", dtype="<f8"), [np.inf]))
    ref_codes = np.fromfile(d / "ref_codes.u32", dtype="<u4")
    cur_codes = np.fromfile(d / "cur_codes.u32", dtype="<u4")
    ref_counts = np.histogram(ref, edges)[0]

    def psi():
        r = ref_counts / ref_counts.sum()
        c = np.histogram(cur, edges)[0]
        c = c / c.sum()
        r = np.where(r == 0, 0.0001, r)
        c = np.where(c == 0, 0.0001, c)
        return np.sum((r - c) * np.log(r / c))

    def js():
        return distance.jensenshannon(ref_counts, np.histogram(cur, edges)[0])

    def hellinger():
        r = ref_counts / ref_counts.sum()
        c = np.histogram(cur, edges)[0]
        c = c / c.sum()
        return np.sqrt(np.sum((np.sqrt(r) - np.sqrt(c)) ** 2) / 2)

    def chi_square():
        n = int(max(ref_codes.max(), cur_codes.max())) + 1
        table = np.array([np.bincount(ref_codes, minlength=n), np.bincount(cur_codes, minlength=n)])
        return stats.chi2_contingency(table, correction=False)[1]

    results = {
        "psi": best_of(3, psi),
        "jensen_shannon": best_of(3, js),
        "hellinger": best_of(3, hellinger),
        "ks": best_of(3, lambda: stats.ks_2samp(ref, cur, method="asymp").statistic),
        "wasserstein": best_of(3, lambda: stats.wasserstein_distance(ref, cur)),
        "chi_square": best_of(3, chi_square),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
