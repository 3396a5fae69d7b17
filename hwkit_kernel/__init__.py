"""The kernel side of hwkit: the only piece of hwkit that runs inside a student's kernel.

It is installed when the kernel starts, before any student cell (`python -m hwkit_kernel`), and it
answers the grader's probes with data only: JSON, and arrays as .npy buffers. It holds nothing of the
grader, the problem bank or the course; the grader never trusts what it says about the student's code,
only outputs on inputs the grader chose (see docs/architecture.md, "Grading protocol").

Problem kernels (templates/<problem>/kernel.py) import their helpers from here."""
