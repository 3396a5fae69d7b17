"""`python -m hwkit_kernel -f CONNECTION_FILE`: an IPython kernel with hwkit's probe runtime installed."""
import sys

from hwkit_kernel.launch import main

main(sys.argv[1:])
