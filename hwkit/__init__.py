"""hwkit: randomized homework generation and sandboxed autograding for a neural-network course."""
__version__ = "0.1.0"
