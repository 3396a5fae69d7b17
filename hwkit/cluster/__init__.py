"""`hwkit grade --cluster`: grading on a Dask distributed cluster (the optional extra `hwkit[cluster]`).

Read in this order:
    payload     what a worker needs of the course and the bank (sent once per worker) and of one submission
    identity    what a worker must share with the grader: hwkit's version and code, Python, torch, numpy
    worker      on each Dask worker: the course plugin, the lanes, the grading task (bytes back: JSON)
    client      the grader's side: connect (tcp:// or tls://), check the workers, send, read the replies as
                the local batch's messages (hwkit.grading.main writes them, as for a local batch)
    doctor      `hwkit cluster doctor`: can these workers grade for this machine?

Nothing here is imported unless --cluster (or `hwkit cluster`) is used, so hwkit never needs Dask otherwise."""
