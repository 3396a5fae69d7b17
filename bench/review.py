"""Server-side milliseconds of the review page on a big class: N graded submissions (synthetic gradebook rows:
12 parts each, 2 of them written answers awaiting review, drawn from a pool of paraphrases so that answer groups
form), then the median over R requests of rendering the queue, a student's page, and saving an override (the
record, the student's feedback page, grades.csv and summary.html; the histogram is redrawn in the background).

    .venv/bin/python bench/review.py [--students 1000] [--runs 15]

The figure is the app's own (its Server-Timing header), through Starlette's test client: no network in it. The
app keeps the gradebook it read until another process changes it (SQLite's data_version), then reads again the
students whose results changed: "one student changed elsewhere" records an override from another connection
before each request, as `hwkit override` in another shell would; "whole class regraded elsewhere" makes the app
read every result again, as after `hwkit grade --force`.
Target: under 100 ms each. Prints figures only; asserts nothing."""
from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.testclient import TestClient  # noqa: E402

from hwkit.course import load_course  # noqa: E402
from hwkit.gradebook import Gradebook, Override, PartResult, SubmissionResult  # noqa: E402
from hwkit.report import write_feedback, write_reports  # noqa: E402
from hwkit.review.app import ReviewServer, build_app, seen_field, seen_token  # noqa: E402
from hwkit.scaffold import init_course  # noqa: E402

PORT = 8799
PHRASES = ["filters each channel on its own", "uses one kernel per input channel", "mixes channels with a 1x1 conv",
           "needs far fewer parameters", "is much cheaper to compute", "splits the conv into two steps",
           "then combines the channels pointwise", "so it costs less"]


def _written(rng: random.Random, problem: str, part: str) -> PartResult:
    text = "A depthwise separable conv " + ", ".join(rng.sample(PHRASES, 3)) + "."
    return PartResult(problem, part, {"en": part, "zh": part}, rng.choice([0.5, 1.0, 1.5]), 2.0,
                      "WRITTEN_MISSING_COST", {"en": "Provisional.", "zh": "暂定。"}, True, text, str(hash(text)))


def _value(rng: random.Random, problem: str, part: str) -> PartResult:
    right = rng.random() < 0.8
    return PartResult(problem, part, {"en": part, "zh": part}, 1.0 if right else 0.0, 1.0,
                      "CORRECT" if right else "WRONG", {"en": "Checked.", "zh": "已检查。"}, False,
                      f"{part} = {rng.randint(1, 999)}", f"fp-{part}")


def build_course(folder: Path, students: int) -> tuple[Path, list[str]]:
    root = init_course(folder / "course", lang="en")
    ids = [f"s{i:05d}" for i in range(students)]
    (root / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},Student {s}\n" for s in ids), encoding="utf-8")
    (root / "assignments" / "big.toml").write_text('title = "Big"\n\n[[problems]]\nid = "depthwise-separable"\n',
                                                   encoding="utf-8")
    rng = random.Random(0)
    book = Gradebook(root)
    for sid in ids:
        parts = [_written(rng, "depthwise-separable", "ds_principle"), _written(rng, "conv-cost", "conv1x1_role")]
        parts += [_value(rng, "receptive-field", f"value_{k}") for k in range(10)]
        book.record(SubmissionResult("big", sid, "ok", "", f"h-{sid}", parts, graded_at="2026-01-01T00:00:00+00:00"))
    course = load_course(root)
    results = book.results("big")
    for result in results:
        write_feedback(course, result)
    write_reports(course, "big", results)
    book.close()
    return root, ids


def server_ms(reply) -> float:
    if reply.status_code >= 400:
        raise SystemExit(f"request failed: {reply.status_code} {reply.text[:200]}")
    return float(re.search(r"dur=([\d.]+)", reply.headers["server-timing"]).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwkit-bench-review-") as tmp:
        start = time.perf_counter()
        root, ids = build_course(Path(tmp), args.students)
        print(f"{args.students} graded submissions (12 parts, 2 written awaiting review) built in "
              f"{time.perf_counter() - start:.1f}s")
        server = ReviewServer(load_course(root), "big", "t" * 32, PORT, grader="bench")
        client = TestClient(build_app(server), base_url=f"http://127.0.0.1:{PORT}")
        q = f"?token={server.token}"
        client.get("/" + q)                                         # warm: templates compiled, bank loaded
        elsewhere = Gradebook(root)

        def one_changed(i: int):
            sid = ids[i * 31 % len(ids)]
            elsewhere.add_overrides([Override("big", sid, "receptive-field", "value_1", 0.5, "elsewhere", "ta",
                                              "2026-01-02T00:00:00+00:00", 1.0, f"h-{sid}", "fp-value_1")])
            return client.get("/" + q)

        def save(i: int):
            """A decision as the page posts it, with what the page showed of the part."""
            sid = ids[i * 53 % len(ids)]
            [part] = [p for r in server.results() if r.student_id == sid for p in r.parts if p.part == "value_3"]
            return client.post(f"/override{q}", headers={"origin": f"http://127.0.0.1:{PORT}",
                                                         "accept": "application/json"},
                               data={"student": sid, seen_field(sid): seen_token(part), "part": "value_3",
                                     "score": "0.5", "comment": "bench"})

        def all_changed():
            server.cached, server.stamps = (None, [], {}), {}
            return client.get("/" + q)

        figures = {
            "queue (first page of answer groups)": [server_ms(client.get("/" + q)) for _ in range(args.runs)],
            "queue, one student changed elsewhere": [server_ms(one_changed(i)) for i in range(args.runs)],
            "queue, whole class regraded elsewhere": [server_ms(all_changed()) for _ in range(args.runs)],
            "queue filtered by part": [server_ms(client.get(f"/{q}&part=conv1x1_role")) for _ in range(args.runs)],
            "student page": [server_ms(client.get(f"/student/{ids[i * 37 % len(ids)]}{q}")) for i in range(args.runs)],
            "save an override": [server_ms(save(i)) for i in range(args.runs)],
        }
        for what, ms in figures.items():
            print(f"{what:38s} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   ({len(ms)} runs)")


if __name__ == "__main__":
    main()
