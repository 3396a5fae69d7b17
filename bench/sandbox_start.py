"""How much a jail adds to starting a kernel: median over N runs of a plain local kernel, a cold jailed one and
a warm jailed one (forked from a zygote started beforehand, not timed).

    .venv/bin/python bench/sandbox_start.py [--runs 10] [--slot 60]

"ready" is start_kernel() -> kernel_info reply and the IPC seal (what nbclient waits for); "setup" is
__enter__ (run dir, tmpfs mounts, cgroups); "teardown" is __exit__ (kill, verify, remove). Prints figures
only; asserts nothing."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_core.utils import run_sync  # noqa: E402

from hwkit.course import SandboxLimits  # noqa: E402
from hwkit.sandbox import Jail, LocalKernel, sandbox_available  # noqa: E402
from hwkit.warm import WarmJail, process_zygote  # noqa: E402


async def _start_until_ready(km) -> float:
    started = time.perf_counter()
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        return time.perf_counter() - started
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)


def _time_one(kind, workdir: Path, limits: SandboxLimits, slot: int) -> dict[str, float]:
    t0 = time.perf_counter()
    runner = kind(workdir, limits, slot=slot)
    runner.__enter__()
    setup = time.perf_counter() - t0
    try:
        ready = run_sync(_start_until_ready)(runner.km)
    finally:
        t1 = time.perf_counter()
        runner.__exit__(None, None, None)
        teardown = time.perf_counter() - t1
    return {"setup": setup, "ready": ready, "teardown": teardown, "total": setup + ready + teardown}


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--slot", type=int, default=60, help="sandbox slot (uid 61000+slot) to use")
    args = parser.parse_args()
    ok, why = sandbox_available()
    kinds = [("local", LocalKernel)] + ([("jail", Jail), ("warm jail", WarmJail)] if ok else [])
    if ok:
        process_zygote()                                                  # its imports are paid once per worker
    else:
        print(f"jails skipped: {why}")
    limits = SandboxLimits()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _ in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "submission.ipynb").write_text("{}")
        for name, kind in kinds:
            _time_one(kind, workdir, limits, args.slot)                   # warm the page cache
        for _ in range(args.runs):                                        # interleaved: load hits both alike
            for name, kind in kinds:
                samples[name].append(_time_one(kind, workdir, limits, args.slot))
    results = {name: _medians(s) for name, s in samples.items()}
    print(f"median over {args.runs} runs (seconds)      setup    ready  teardown    total")
    for name, m in results.items():
        print(f"  {name:<35} {m['setup']:7.3f}  {m['ready']:7.3f}  {m['teardown']:8.3f}  {m['total']:7.3f}")
    local = results["local"]
    for name in ("jail", "warm jail"):
        if name in results:
            jail = results[name]
            print(f"  {name} adds to kernel-ready:          {1000 * (jail['ready'] - local['ready']):+.0f} ms")
            print(f"  {name} adds overall (setup..teardown): {1000 * (jail['total'] - local['total']):+.0f} ms")


if __name__ == "__main__":
    main()
