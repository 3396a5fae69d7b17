"""`hwkit cluster doctor ADDRESS`: can this cluster grade for this machine? Per worker: the same software as
here (hwkit's version and code, Python, torch, numpy, Dask), the bank it holds, and `hwkit sandbox doctor` run
on the worker itself (bubblewrap, uid switching, cgroups, tmpfs, a test kernel in a jail)."""
from __future__ import annotations

import json

from hwkit.cluster.client import ClusterTarget, connect, quiet_dask
from hwkit.cluster.identity import differences, software
from hwkit.cluster.worker import worker_doctor
from hwkit.errors import HwkitError

Line = tuple[bool | None, str]        # (ok, text); None: information, neither ok nor a problem


def _local_bank() -> tuple[str, str]:
    """(digest, words) of the bank this machine would send."""
    try:
        from hwkit.cluster.payload import bank_digest

        digest = bank_digest()
    except HwkitError as exc:
        return "", f"this machine has no problem bank to send ({exc})"
    return digest, f"this machine sends bank {digest[:12]} with each batch"


def cluster_doctor(target: ClusterTarget) -> tuple[list[tuple[str, list[Line]]], bool]:
    """[(heading, lines)] per worker (the first entry is the cluster's), and whether everything is ok."""
    mine = software()
    bank, bank_words = _local_bank()
    with quiet_dask():
        client = connect(target)
        try:
            workers = client.scheduler_info().get("workers", {})
            head: list[Line] = [(True, f"scheduler {target.address} answers; {len(workers)} worker(s)"),
                                (None, f"this machine: hwkit {mine['hwkit']} (code {mine['engine'][:12]}), Python "
                                       f"{mine['python']}, torch {mine['torch']}, numpy {mine['numpy']}, Dask "
                                       f"{mine['distributed']}; {bank_words}")]
            if not workers:
                head.append((False, f"no workers: start some with `dask worker {target.address}` on machines that "
                                    "have hwkit and bubblewrap"))
                return [("cluster", head)], False
            replies = client.run(worker_doctor, on_error="return")
        finally:
            client.close(timeout=5)
    report = [("cluster", head)]
    for address, raw in sorted(replies.items()):
        report.append((f"worker {address}", _worker_lines(raw, mine, bank)))
    ok = all(ok is not False for _, lines in report for ok, _ in lines)
    return report, ok


def _worker_lines(raw, mine: dict, bank: str) -> list[Line]:
    try:
        facts = json.loads(raw)
    except (TypeError, ValueError):
        return [(False, f"could not run hwkit's doctor ({type(raw).__name__}: {str(raw)[:200]}): install hwkit "
                        "with its cluster extra on that machine, the same version as here")]
    lines: list[Line] = [(None, f"host {facts['host']}, pid {facts['pid']}, {facts['nthreads']} Dask thread(s), "
                                f"{facts['cores']} core(s): {facts['nthreads'] + 1} lanes by default")]
    differ = differences(mine, facts["software"])
    theirs = facts["software"]
    lines.append((not differ, "same software as this machine: hwkit " + theirs["hwkit"] + ", same code" if not differ
                  else "other software than this machine: " + "; ".join(differ) + ". Install the same versions"))
    held = facts.get("bank", "")
    if not held:
        lines.append((None, "bank: none loaded yet (each batch sends the course's bank)"))
    elif held == bank:
        lines.append((True, f"bank: the same as this machine's ({held[:12]})"))
    else:
        lines.append((None, f"bank: holds another ({held[:12]}); the next batch from here restarts this worker's "
                            "process (a process imports one bank)"))
    if facts.get("broken"):
        lines.append((False, f"refuses work: {facts['broken']}; restart it"))
    for name, ok, message in facts.get("checks", []):
        lines.append((bool(ok), f"{name}: {message}"))
    return lines
