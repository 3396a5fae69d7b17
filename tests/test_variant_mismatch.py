"""A student hands in a friend's completed notebook as their own. Grading re-derives the student's own
variant, so the friend's answers mostly fail; but whatever still scores must not pass silently: the
submission gets the status `variant mismatch`, keeps its scores, is marked for review and the reason says
whose variant it is and why. Honest students are never flagged, and nobody is named on weak evidence.

The first half asks the evidence step (hwkit/integrity.py) directly, without a kernel: the notebook and
the replies the grader would have seen. The second half is the TA's story with `hwkit grade`."""
import json
import random
import re
import time
from pathlib import Path

import pytest

from hwkit import integrity
from hwkit.checks import Reply, grade_reply
from hwkit.course import Student, load_course
from hwkit.generate import build_variant
from hwkit.gradebook import REASON_CHARS, Gradebook, PartResult, SubmissionResult
from hwkit.probes import as_reply
from hwkit.records import Status
from hwkit.report import feedback_html, grades_rows, summary_html
from hwkit.sandbox import sandbox_available
from tests.support import append_cell, hwkit, make_course, read_grades, release_notebook, solution_notebook, submit

PROBLEMS = ["receptive-field", "conv-cost"]
STUDENTS = [f"s{i:03d}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("mismatch"), PROBLEMS, STUDENTS)


def _context(root: Path):
    course = load_course(root)
    return course, course.assignment("t")


def _replies_of(root: Path, author: str) -> dict[tuple[str, str], Reply]:
    """What the kernel reports for `author`'s solved notebook: each part's reference reply for author's variant."""
    course, spec = _context(root)
    return {(pv.problem.id, part.id): Reply(True, as_reply(part.reference(part.probe(random.Random(1)))))
            for pv in build_variant(course, spec, Student(author)).problems for part in pv.parts}


def _wrong(root: Path, graded: str, replies: dict) -> list:
    """The parts the grader would score below full for `graded`, with their replies: what grade_submission
    hands to the evidence step."""
    course, spec = _context(root)
    out = []
    for pv in build_variant(course, spec, Student(graded)).problems:
        for part in pv.parts:
            reply = replies.get((pv.problem.id, part.id), Reply(False, error_type="NotAnswered"))
            probe = part.probe(random.Random(2))
            if grade_reply(part, reply, probe).fraction < 1:
                out.append((pv.problem.id, part, reply))
    return out


def _examine(root: Path, graded: str, nb, replies: dict | None = None):
    course, spec = _context(root)
    return integrity.examine(course, spec, graded, nb, _wrong(root, graded, replies or {}))


def _friends_notebook(root: Path, friend: str, submitter: str, metadata: str):
    nb = solution_notebook(root, friend)
    nb.metadata = release_notebook(root, friend).metadata
    if metadata == "edited":        # the student's own identification, copied from their own release
        nb.metadata["hwkit"] = dict(release_notebook(root, submitter).metadata["hwkit"])
    elif metadata == "student field edited":
        nb.metadata["hwkit"]["student"] = submitter
    elif metadata == "stripped":
        nb.metadata = {}
    return nb


def _named(finding) -> str:
    return " ".join([finding.evidence, *finding.notes])


# ---- the evidence, without a kernel ---------------------------------------------------------------------

@pytest.mark.parametrize("metadata", ["as is", "student field edited", "edited", "stripped"])
def test_a_friends_notebook_is_their_variant(course, metadata):
    nb = _friends_notebook(course, "s002", "s001", metadata)
    finding = _examine(course, "s001", nb, _replies_of(course, "s002"))
    assert finding.mismatch and finding.suspects == ["s002"], _named(finding)
    assert "parameter cells match s002's variant" in finding.evidence
    # how many answers are rare enough to name s002 depends on the course secret (the background variants)
    assert re.search(r"\d+ answers? equals? s002's references?", finding.evidence), finding.evidence
    if metadata == "as is":
        assert "variant id is s002's" in finding.evidence


def test_retyped_answers_alone_name_the_friend(course):
    """The student keeps their own notebook and types in every answer of the friend's."""
    finding = _examine(course, "s001", release_notebook(course, "s001"), _replies_of(course, "s002"))
    assert finding.mismatch and finding.suspects == ["s002"]
    assert "parameter cells" not in finding.evidence and "answers equal s002's references" in finding.evidence


def test_the_friends_variant_id_alone_is_evidence(course):
    nb = release_notebook(course, "s001")
    nb.metadata["hwkit"]["variant_id"] = release_notebook(course, "s003").metadata["hwkit"]["variant_id"]
    finding = _examine(course, "s001", nb)
    assert finding.mismatch and finding.suspects == ["s003"] and "variant id is s003's" in finding.evidence


def test_one_copied_answer_names_nobody(course):
    mine, theirs = _replies_of(course, "s001"), _replies_of(course, "s002")
    key = ("conv-cost", "conv_params")
    assert mine[key] != theirs[key]
    nb = solution_notebook(course, "s001")
    finding = _examine(course, "s001", nb, {**mine, key: theirs[key]})
    assert not finding.mismatch and "s002" not in _named(finding)


def test_a_few_copied_cells_or_a_student_field_alone_name_nobody(course):
    nb = solution_notebook(course, "s001")
    friend = release_notebook(course, "s002")
    statement = next(c for c in friend.cells if c.cell_type == "markdown" and "conv" in c.source.lower())
    nb.cells.append(statement)                                  # one of the friend's cells, pasted for reference
    nb.metadata["hwkit"]["student"] = "s002"                     # and the student field says the friend
    finding = _examine(course, "s001", nb, _replies_of(course, "s001"))
    assert not finding.mismatch and "s002" not in _named(finding)
    assert any("names another student" in note for note in finding.notes)


def test_honest_students_are_never_flagged(course):
    """Every student's own solution and own starter notebook, as handed out and with metadata stripped."""
    for sid in STUDENTS:
        for nb, replies in ((solution_notebook(course, sid), _replies_of(course, sid)), (release_notebook(course, sid), {})):
            for strip in (False, True):
                if strip:
                    nb.metadata = {}
                finding = _examine(course, sid, nb, replies)
                assert not finding.mismatch and not finding.notes, (sid, _named(finding))


def test_honest_mistakes_are_not_someone_elses_answers(course):
    """Students who make the classic mistakes on every part they can get wrong are not matched to anyone."""
    course_, spec = _context(course)
    for sid in STUDENTS:
        replies = {}
        for pv in build_variant(course_, spec, Student(sid)).problems:
            for part in pv.parts:
                probe = part.probe(random.Random(1))
                mistakes = part.mistakes(probe)
                replies[(pv.problem.id, part.id)] = Reply(True, as_reply(
                    mistakes[0].value if mistakes else part.reference(probe)))
        finding = _examine(course, sid, solution_notebook(course, sid), replies)
        assert not finding.mismatch and not finding.notes, (sid, _named(finding))


def test_a_variant_id_of_nobody_is_noted_without_a_name(course):
    nb = solution_notebook(course, "s001")
    nb.metadata["hwkit"]["variant_id"] = "abcdabcdabcdabcd"
    finding = _examine(course, "s001", nb, _replies_of(course, "s001"))
    assert not finding.mismatch and finding.notes == ["the notebook's variant id matches no student of the roster"]


def test_the_answer_index_is_built_once_per_process(course, monkeypatch):
    builds = []
    real = integrity.build_variant
    monkeypatch.setattr(integrity, "build_variant", lambda *a: builds.append(a) or real(*a))
    integrity.forget()
    for graded in ("s001", "s003", "s005"):
        _examine(course, graded, release_notebook(course, graded), _replies_of(course, "s002"))
    assert len(builds) == len(STUDENTS) + integrity.BACKGROUND


def test_huge_metadata_stays_out_of_reasons(course):
    nb = _friends_notebook(course, "s002", "s001", "as is")
    nb.metadata["hwkit"]["student"] = "x" * (15 * 2**20)
    course_, spec = _context(course)
    status, reason = integrity.review(course_, spec, "s001", nb, [], "cell errors", "2 cell(s) raised an error")
    assert status == Status.VARIANT_MISMATCH and len(reason) <= REASON_CHARS
    assert "s002" in reason and "cell errors" in reason
    nb = solution_notebook(course, "s001")                        # the student's own work, odd metadata
    nb.metadata["hwkit"] = {"student": "\n".join(["ignore me"] * 10**6), "variant_id": ["x"] * 10**6}
    status, reason = integrity.review(course_, spec, "s001", nb, [], "ok", "")
    assert status == "ok" and len(reason) <= REASON_CHARS and "\n" not in reason


def test_a_mismatch_with_cell_errors_says_both(course):
    nb = _friends_notebook(course, "s002", "s001", "stripped")
    course_, spec = _context(course)
    wrong = _wrong(course, "s001", _replies_of(course, "s002"))
    status, reason = integrity.review(course_, spec, "s001", nb, wrong, "cell errors", "1 cell(s) raised an error")
    assert status == Status.VARIANT_MISMATCH
    assert reason.startswith("parameter cells match s002's variant") and "cell errors: 1 cell(s) raised an error" in reason


def test_the_evidence_step_never_fails_grading(course, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(integrity, "examine", broken)
    course_, spec = _context(course)
    status, reason = integrity.review(course_, spec, "s001", release_notebook(course, "s001"), [], "ok", "")
    assert status == "ok" and "could not run" in reason


def test_whole_roster_index_cost(course):
    """The cost of the answer index per roster student (printed; the 1,000-student figure is in the report)."""
    course_, spec = _context(course)
    integrity.forget()
    start = time.perf_counter()
    integrity.answer_index(course_, spec)
    per = (time.perf_counter() - start) / (len(STUDENTS) + integrity.BACKGROUND)
    print(f"answer index: {per * 1000:.1f} ms per student")
    assert per < 0.05


# ---- what the TA reads -----------------------------------------------------------------------------------

def _result(status: str, reason: str) -> SubmissionResult:
    result = SubmissionResult("t", "s001", status, reason, "hash")
    result.parts = [PartResult("conv-cost", "conv_params", {"en": "params", "zh": "参数"}, 2.0, 2.0, "CORRECT",
                               {"en": "Correct.", "zh": "正确。"})]
    return result


def test_a_mismatch_keeps_its_scores_and_asks_for_review(tmp_path):
    result = _result(Status.VARIANT_MISMATCH, "parameter cells match s002's variant; 4 answers equal s002's references")
    assert result.score == 2.0 and result.needs_review
    header, rows = grades_rows([result, _result("ok", "")])
    assert rows[0]["needs_review"] == "yes" and rows[0]["status"] == Status.VARIANT_MISMATCH and rows[1]["needs_review"] == ""
    page = summary_html("t", [result, _result("ok", "")])
    assert "1 variant mismatch" in page and "s002" in page


def test_the_students_page_names_no_one_else(tmp_path):
    page = feedback_html(_result(Status.VARIANT_MISMATCH, "parameter cells match s002's variant"), "en")
    assert "variant mismatch" in page and "s002" not in page


def test_stored_and_rendered_reasons_are_bounded(tmp_path):
    huge = "y" * (14 * 2**20)
    book = Gradebook(tmp_path)
    book.record(_result("ok", huge))
    stored = book.results("t")[0]
    book.close()
    assert len(stored.reason) <= REASON_CHARS
    assert len(feedback_html(_result("ok", huge), "en")) < 10_000
    assert len(grades_rows([_result("ok", huge)])[1][0]["reason"]) <= REASON_CHARS
    assert len(summary_html("t", [_result(Status.VARIANT_MISMATCH, huge)])) < 10_000


# ---- the TA's story, end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not sandbox_available()[0]:
        pytest.skip("needs the bubblewrap sandbox")
    root = make_course(tmp_path_factory.mktemp("mismatch-grade"), PROBLEMS, STUDENTS)
    submit(root, "s001", _friends_notebook(root, "s002", "s001", "as is"))
    submit(root, "s002", solution_notebook(root, "s002"))                        # the friend: honest
    submit(root, "s003", _friends_notebook(root, "s004", "s003", "edited"))
    submit(root, "s004", release_notebook(root, "s004"))                         # honest, starter untouched
    submit(root, "s005", _friends_notebook(root, "s006", "s005", "stripped"))
    nb = solution_notebook(root, "s006")                                          # honest, one answer from s005
    theirs = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s005"]
    append_cell(nb, f"conv_params = {theirs['conv-cost']['answers']['conv_params']}")
    submit(root, "s006", nb)
    nb = _friends_notebook(root, "s008", "s007", "as is")                        # a friend's notebook that also errs
    append_cell(nb, "1 / 0")
    submit(root, "s007", nb)
    nb = solution_notebook(root, "s008")                                          # honest, huge metadata
    nb.metadata["hwkit"]["student"] = "x" * (15 * 2**20)
    submit(root, "s008", nb)
    proc = hwkit("grade", "t", "--course", root, "--jobs", "2")
    return root, proc


def test_copied_notebooks_are_flagged_with_their_evidence(graded):
    root, _ = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    for sid, friend in (("s001", "s002"), ("s003", "s004"), ("s005", "s006"), ("s007", "s008")):
        row = grades[sid]
        assert row["status"] == Status.VARIANT_MISMATCH and row["needs_review"] == "yes", (sid, row)
        assert f"parameter cells match {friend}'s variant" in row["reason"], (sid, row["reason"])
        assert float(row["total"]) > 0        # scores stay visible
    assert "cell errors" in grades["s007"]["reason"]


def test_honest_submissions_are_not_flagged(graded):
    root, _ = graded
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    for sid in ("s002", "s004", "s006", "s008"):
        assert grades[sid]["status"] != Status.VARIANT_MISMATCH and "s00" not in grades[sid]["reason"], (sid, grades[sid])
    assert len(grades["s008"]["reason"]) <= REASON_CHARS
    assert grades["s002"]["total"] == grades["s002"]["max"]


def test_the_summary_and_the_last_line_count_mismatches(graded):
    root, proc = graded
    assert "4 variant mismatch" in proc.stdout.strip().splitlines()[-1] or "4 variant mismatch" in proc.stdout
    assert "4 variant mismatch" in (root / "graded" / "t" / "summary.html").read_text()
    page = (root / "graded" / "t" / "s001" / "feedback.html").read_text()
    assert "variant mismatch" in page and "s002" not in page
    assert (root / "graded" / "t" / "s008" / "feedback.html").stat().st_size < 100_000


def test_a_part_with_many_answers_stays_evidence_despite_one_chance_repeat_in_the_background():
    """With some course secrets two of the 100 background variants happen to share a reference of a part that has
    tens of thousands of answers; that part must still count, while a part with a handful of answers never does."""
    key_many, key_few = ("p", "many"), ("p", "few")
    index = integrity.AnswerIndex()
    rng = random.Random(7)
    for i in range(integrity.BACKGROUND):
        value = "same" if i < 2 else f"v{rng.randrange(10**9)}"        # one chance pair
        index.add(key_many, {"canonical": value}, None)
        index.add(key_few, {"canonical": f"v{i % 8}"}, None)          # eight possible answers
    index.add(key_many, {"canonical": "s002-ref"}, "s002")
    index.add(key_few, {"canonical": "s002-few"}, "s002")
    assert index.varies(key_many) and not index.varies(key_few)
    assert index.rare_holders_of(key_many, {"canonical": ["s002-ref"]}) == {"s002"}
    assert index.rare_holders_of(key_many, {"canonical": ["same"]}) == set()     # held by two: not rare
    assert index.rare_holders_of(key_few, {"canonical": ["s002-few"]}) == set()
