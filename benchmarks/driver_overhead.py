"""Host-side overhead of the DyFiP driver per image: branch + exit/top-k decision + mask lookup.

    python benchmarks/driver_overhead.py --bundle build/demo [--out FILE.json]

Stage-A features come from the bundle's numpy accelerator (no board needed); the timed part
is exactly what ``DyFiP.classify`` does on the host between stage A and stage B.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from dyfip.bundle import write_json
from dyfip.dataflow import Accelerator
from dyfip.driver import Deployment, HostPolicy


def measure(bundle: Path, repeats: int = 5, limit: int = 2000) -> dict:
    dep = Deployment.load(bundle)
    policy = HostPolicy(dep)
    images = dep.reference()["images"][:limit]
    feats = Accelerator(dep.accel_dir).stage_a(images.transpose(0, 2, 3, 1))
    singles = []
    for _ in range(repeats):
        for i in range(len(feats)):
            f = feats[i:i + 1]
            t0 = time.perf_counter()
            step = policy.step(f)
            policy.masks(step.rows)
            singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step = policy.step(feats)
        policy.masks(step.rows)
    batched = (time.perf_counter() - t0) / repeats / len(feats)
    us = np.array(singles) * 1e6
    return {"bundle": str(bundle), "images": len(feats), "repeats": repeats,
            "single_image_us": {"median": float(np.median(us)), "mean": float(us.mean()),
                                "p90": float(np.percentile(us, 90)),
                                "p99": float(np.percentile(us, 99))},
            "batched_us_per_image": batched * 1e6, "exit_rate": float(step.decision.exit.mean()),
            "target_us": 100.0, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("build/demo"))
    ap.add_argument("--out", type=Path, help="JSON file (default <bundle>/driver_overhead.json)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    res = measure(args.bundle, args.repeats)
    s = res["single_image_us"]
    print(f"host overhead per image (branch + decision + mask lookup), {res['images']} images "
          f"x {res['repeats']}: single median {s['median']:.1f} us, p99 {s['p99']:.1f} us; "
          f"batched {res['batched_us_per_image']:.2f} us/image (target < 100 us)")
    out = args.out or args.bundle / "driver_overhead.json"
    write_json(out, res)
    print(f"wrote {out}")
    return 0 if s["median"] < res["target_us"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
