"""Generation speed: 200 students x the hw1-conv problems. Prints seconds per student-problem."""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hwkit.course import load_course  # noqa: E402
from hwkit.generate import generate, write_generated  # noqa: E402
from tests.support import make_course  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
with tempfile.TemporaryDirectory() as td:
    root = make_course(Path(td), ["receptive-field", "conv-cost", "depthwise-separable"],
                       [f"s{i:04d}" for i in range(N)], generate_now=False)
    course = load_course(root)
    spec = course.assignment("t")
    t0 = time.perf_counter()
    built = generate(course, spec, "zh", course.students())
    t1 = time.perf_counter()
    write_generated(course, spec, built)
    t2 = time.perf_counter()
    per = (t2 - t0) / (N * len(spec.problems))
    print(f"students={N} problems={len(spec.problems)} build={t1 - t0:.2f}s write={t2 - t1:.2f}s "
          f"total={t2 - t0:.2f}s per_student_problem={per * 1000:.2f}ms")
