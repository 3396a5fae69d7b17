"""Batch grading, one module per stage:

- `submissions`: which notebook in each student's folder is graded, and why.
- `one`: grading one submission, as a short sequence of named steps (read, probe plan, run in a kernel,
  score each part, check the variant).
- `batch`: lanes and worker processes that grade many submissions at once on this machine.
- `main`: the `hwkit grade` command: what is left to grade, the progress bar, writing each result as it comes.

Parameters are re-derived from the roster and the course secret, never read from the notebook."""
