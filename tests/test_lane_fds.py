"""Lanes are threads of one worker: a file descriptor closed twice by one lane may by then be another lane's
(its kernel's pidfd, a socket), so a second close or a signal through a stale pidfd would hit the wrong
kernel. A warm kernel's handle is polled by the lane and by its jail's watchdog at once; each of its
descriptors must be closed exactly once, however the threads interleave."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from hwkit.warm import ForkedKernel

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux 5.3+)")


def test_a_kernel_polled_by_many_threads_closes_each_descriptor_once(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pidfd = os.pidfd_open(child.pid)
    status_read, status_write = os.pipe()
    os.write(status_write, b"0")
    os.close(status_write)
    child.wait()                                   # the kernel has exited: every poll now sees it
    kernel = ForkedKernel(child.pid, pidfd, status_read)

    closed: list[int] = []
    real_close, real_read = os.close, os.read

    def counting_close(fd):
        closed.append(fd)
        real_close(fd)

    def slow_read(fd, n):                          # widens the window between "it exited" and closing
        time.sleep(0.02)
        return real_read(fd, n)

    monkeypatch.setattr(os, "close", counting_close)
    monkeypatch.setattr(os, "read", slow_read)
    start, errors, codes = threading.Barrier(8), [], []

    def lane():
        start.wait()
        try:
            codes.append(kernel.poll())
            kernel.send_signal(9)                  # after exit: must not reach a reused descriptor
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=lane) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert codes == [0] * 8
    assert sorted(closed) == sorted([pidfd, status_read])
