"""The review workflow's web side: the queue of what a person must decide (queue.py) and the local app (app.py)."""
