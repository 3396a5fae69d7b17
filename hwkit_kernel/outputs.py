"""A cap on each cell's output inside the kernel, so that an accidental flood (a 200 MB print, a giant
repr) is cut before it is sent. A student can undo this; the grader bounds what it accepts on its own."""
from __future__ import annotations

import json
import sys


def cap_outputs(shell, limit: int) -> None:
    note = f"\n[output truncated: this cell printed more than {limit} characters]\n"
    used: dict[str, int] = {}

    def spend(parent, n: int) -> int | None:
        """Characters of n this cell may still show, or None once its budget is spent."""
        msg_id = (parent or {}).get("msg_id", "")
        before = used.get(msg_id, 0)
        used[msg_id] = before + n
        return None if before > limit else min(n, limit - before)

    def capped(stream, write):
        def capped_write(text):
            if not isinstance(text, str):
                return write(text)
            room = spend(stream.parent_header, len(text))
            if room == len(text):
                return write(text)
            if room is not None:
                used[(stream.parent_header or {}).get("msg_id", "")] = limit + 1
                write(text[:max(0, room - len(note))] + note)
            return len(text)
        return capped_write

    def cap_display(msg):
        data = msg.get("content", {}).get("data") or {}
        n = sum(len(v) if isinstance(v, str) else len(json.dumps(v, default=str)) for v in data.values())
        room = spend(msg.get("parent_header"), n)
        if room == n:
            return msg
        if room is None:
            return None
        msg["content"]["data"], msg["content"]["metadata"] = {"text/plain": note.strip()}, {}
        return msg

    def capped_traceback(show):
        def show_capped(etype, evalue, stb):
            text = str(evalue)
            evalue = text if len(text) <= 2000 else text[:2000] + " [truncated]"
            kept, left = [], limit
            for line in reversed(list(stb)):
                if len(line) > left:
                    kept.insert(0, "[traceback truncated]")
                    break
                kept.insert(0, line)
                left -= len(line)
            return show(etype, evalue, kept)
        return show_capped

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "parent_header"):
            stream.write = capped(stream, stream.write)
    if hasattr(shell, "_showtraceback"):
        shell._showtraceback = capped_traceback(shell._showtraceback)
    for publisher in (shell.display_pub, shell.displayhook):
        if hasattr(publisher, "register_hook"):
            publisher.register_hook(cap_display)
