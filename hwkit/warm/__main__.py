"""`python -m hwkit.warm zygote FD`: the zygote process (started by hwkit.warm.client.Zygote)."""
import sys

from hwkit.warm.zygote import zygote_main

if sys.argv[1:2] == ["zygote"] and len(sys.argv) == 3:
    zygote_main(int(sys.argv[2]))
sys.exit("usage: python -m hwkit.warm zygote FD (started by hwkit.warm.Zygote)")
