"""A TA reviews in the browser page: it answers only with its token, refuses changes from other origins and bad
scores (nothing written), scores an answer group in one decision and overrides any part from a student's page; a
decision made on a page loaded before a member was regraded or decided elsewhere is refused (nothing written)."""
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from hwkit.course import load_course
from hwkit.review.app import ReviewServer, build_app
from hwkit.review.queue import ReviewItem, WRITTEN, answer_groups
from tests.review_support import ASSIGNMENT, course_state as _state, synthetic_course, written_part
from tests.support import hwkit, read_grades

PORT = 8765
ORIGIN = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def site(tmp_path):
    root, ids = synthetic_course(tmp_path, students=8)
    server = ReviewServer(load_course(root), ASSIGNMENT, "tok" + "x" * 30, PORT, grader="ta-anna")
    client = TestClient(build_app(server), base_url=ORIGIN)
    return root, ids, server, client


def test_pages_need_the_token(site):
    root, ids, server, client = site
    for url in ("/", f"/student/{ids[0]}", "/nowhere", "/?token=wrong"):
        reply = client.get(url)
        assert reply.status_code == 403 and "token" in reply.text, url
    queue = client.get(f"/?token={server.token}")
    assert queue.status_code == 200 and queue.text.startswith("<!doctype html>")
    assert "8</b> part(s) left" in queue.text and "ds_principle" in queue.text
    assert client.get(f"/?token={server.token}", headers={"host": "evil.example:8765"}).status_code == 403


def test_a_post_without_the_token_or_from_another_origin_is_refused(site):
    root, ids, server, client = site
    before = _state(root)
    form = {"student": ids[0], "part": "ds_principle", "score": "2"}
    assert client.post("/override", data=form, headers={"origin": ORIGIN}).status_code == 403
    forged = client.post(f"/override?token={server.token}", data=form, headers={"origin": "http://evil.example"})
    assert forged.status_code == 403 and "origin" in forged.text
    cross = client.post(f"/override?token={server.token}", data=form, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    assert _state(root) == before


@pytest.mark.parametrize("score", ["-1", "1e9", "abc", "nan", "inf", "2.5", ""])
def test_a_bad_score_is_refused_with_a_reason_and_nothing_written(site, score):
    root, ids, server, client = site
    before = _state(root)
    group = _decision_form(_queue(server, client), ids[0], "ds_principle")
    reply = _save(server, client, group, score)
    assert reply.status_code == 400 and not reply.json()["ok"]
    assert "from 0 to 2" in reply.json()["error"] or "not a number" in reply.json()["error"]
    assert _state(root) == before


@pytest.mark.parametrize("student, part", [("s0000", "no_such_part"), ("nobody", "ds_principle")])
def test_an_unknown_part_or_student_is_refused(site, student, part):
    root, ids, server, client = site
    before = _state(root)
    form = _decision_form(_student_page(server, client, ids[1]), ids[1], "ds_principle")
    reply = _save(server, client, {**form, "student": [ids[1], student], f"seen:{student}": "0:fp", "part": part}, "1",
                  json_reply=False)
    assert reply.status_code == 400 and ("no part" in reply.text or "no graded submission" in reply.text)
    assert _state(root) == before


def test_one_decision_scores_a_whole_answer_group(site):
    root, ids, server, client = site
    queue = client.get(f"/?token={server.token}").text
    assert queue.count('class="group"') == 4          # 8 answers: 4 families of near-duplicates
    members = [ids[0], ids[4]]                        # the same answer, one with a trailing remark
    group = _decision_form(queue, ids[0], "depthwise-separable/ds_principle")
    assert group["student"] == members
    reply = _save(server, client, group, "1.5", comment="Good; say why it is cheaper.")
    assert {k: reply.json()[k] for k in ("ok", "saved", "score", "left")} == {"ok": True, "saved": 2, "score": 1.5,
                                                                              "left": 6}
    grades = read_grades(root / "graded" / ASSIGNMENT / "grades.csv")
    for sid in members:
        assert grades[sid]["total"] == "2.5" and grades[sid]["overridden"] == "ds_principle=1.5"
        page = (root / "graded" / ASSIGNMENT / sid / "feedback.html").read_text()
        assert "Good; say why it is cheaper." in page and "1.5 / 2" in page and "set by ta-anna" in page
    assert grades[ids[1]]["total"] == "2" and grades[ids[1]]["score_kind"] == "provisional"
    assert "6</b> part(s) left" in client.get(f"/?token={server.token}").text


def test_any_part_is_overridden_from_the_student_page(site):
    root, ids, server, client = site
    page = client.get(f"/student/{ids[2]}?token={server.token}")
    assert page.status_code == 200 and "ds_standard_formula" in page.text and "None yet." in page.text
    form = _decision_form(page.text, ids[2], "depthwise-separable/ds_standard_formula")
    assert form["next"] == [f"/student/{ids[2]}"]
    reply = _save(server, client, form, "0", json_reply=False, comment="Regrade request: the bias is counted.")
    assert reply.status_code == 303 and reply.headers["location"] == f"/student/{ids[2]}?token={server.token}"
    page = client.get(reply.headers["location"]).text
    assert "Regrade request: the bias is counted." in page and "ta-anna" in page
    grades = read_grades(root / "graded" / ASSIGNMENT / "grades.csv")
    assert grades[ids[2]]["total"] == "1"           # 1 (written, provisional) + 0 (code, overridden)


def test_answers_are_escaped(site):
    root, ids, server, client = site
    from hwkit.gradebook import Gradebook, SubmissionResult

    book = Gradebook(root)
    book.record(SubmissionResult(ASSIGNMENT, ids[3], "ok", "", "h", [written_part("<script>alert(1)</script> ok ok ok")]))
    book.close()
    for url in ("/", f"/student/{ids[3]}"):
        text = client.get(f"{url}?token={server.token}").text
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


def _item(sid, text):
    return ReviewItem(sid, WRITTEN, written_part(text))


def test_answer_groups_exact_after_normalisation_then_near_duplicates():
    items = [_item("a", "Each channel is filtered on its own, then a 1x1 conv mixes them."),
             _item("b", "EACH channel is filtered on its own，then a 1x1 conv mixes them。"),   # case, full width
             _item("c", "Each channel is filtered on its own, then a 1x1 conv mixes them!!"),  # near-duplicate
             _item("d", "It is cheaper because the parameters are fewer."),
             ReviewItem("e", "undecided formula", written_part("K**2*C_in"))]
    groups = answer_groups(items)
    assert [sorted(i.student_id for i in g.items) for g in groups][0] == ["a", "b", "c"]     # largest first
    assert sorted(sorted(i.student_id for i in g.items) for g in groups) == [["a", "b", "c"], ["d"], ["e"]]


def test_the_similarity_report_is_linked_when_it_exists(site):
    """After `hwkit similarity`, the review page links to its report, behind the same token."""
    root, ids, server, client = site
    token = f"?token={server.token}"
    assert "/similarity" not in client.get("/" + token).text
    assert client.get("/similarity" + token).status_code == 404
    (root / "graded" / ASSIGNMENT / "similarity.html").write_text("<!doctype html><p>pairs</p>", encoding="utf-8")
    assert f'/similarity{token}' in client.get("/" + token).text.replace("&amp;", "&")
    assert client.get("/similarity").status_code == 403
    assert client.get("/similarity" + token).text == "<!doctype html><p>pairs</p>"


def test_the_page_shows_what_another_shell_decided_or_regraded(site):
    """The page stays open while a TA runs `hwkit override` and an instructor regrades a student elsewhere: the
    next page shows both, and every other student as before."""
    from hwkit.gradebook import Gradebook, SubmissionResult
    from tests.review_support import code_part

    root, ids, server, client = site
    q = f"?token={server.token}"
    assert "8</b> part(s) left" in client.get("/" + q).text
    hwkit("override", ASSIGNMENT, ids[0], "ds_principle", "1.5", "--course", root, "--comment", "from a shell")
    assert "7</b> part(s) left" in client.get("/" + q).text
    assert "from a shell" in client.get(f"/student/{ids[0]}{q}").text
    book = Gradebook(root)
    book.record(SubmissionResult(ASSIGNMENT, ids[1], "ok", "", "hash-new", [
        written_part("A regraded answer about channels.", score=2.0), code_part(0.0)],
        graded_at="2026-01-03T00:00:00+00:00"))
    book.close()
    assert "7</b> part(s) left" in client.get("/" + q).text
    page = client.get(f"/student/{ids[1]}{q}").text
    assert "A regraded answer about channels." in page
    assert len(server.results()) == 8 and [r.student_id for r in server.results()] == sorted(ids)


def test_a_diagram_drawn_in_an_answer_cell_is_shown_to_the_reviewer(site):
    """A student answers a diagram part with a matplotlib drawing: the TA sees the figure on the student's page,
    beside the part, taken from the executed notebook grading kept."""
    import base64
    import io

    import nbformat
    from PIL import Image

    root, ids, server, client = site
    png = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(png, format="PNG")
    payload = base64.b64encode(png.getvalue()).decode()
    cell = nbformat.v4.new_code_cell("draw_block()", metadata={"hwkit": {"parts": ["ds_principle"]}})
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": payload, "text/plain": "<Figure>"})]
    kept = root / "graded" / ASSIGNMENT / ids[2] / f"{ASSIGNMENT}.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(kept))
    page = client.get(f"/student/{ids[2]}?token={server.token}").text
    row = page[page.index('id="part-ds_principle"'):page.index('id="part-ds_standard_formula"')]
    assert f'src="data:image/png;base64,{payload}"' in row
    assert "data:image/png" not in client.get(f"/student/{ids[3]}?token={server.token}").text


# A TA with a page open in two tabs, or a page left open while the class is regraded: a decision is made on what
# the page showed. The page posts back, for each member, the answer it showed and the latest decision it knew of.

class _PageForms(HTMLParser):
    """The decision forms of a page, as the TA's browser would post them: each form's hidden fields."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("method") == "post":
            self.forms.append([])
        elif tag == "input" and attrs.get("type") == "hidden" and self.forms:
            self.forms[-1].append((attrs["name"], attrs.get("value") or ""))


def _decision_form(page: str, student: str, part: str) -> dict[str, list[str]]:
    """The hidden fields of the page's form that decides `part` for `student` (alone or in a group)."""
    for fields in _PageForms(page).forms:
        if ("student", student) in fields and any(k == "part" and v.endswith(part) for k, v in fields):
            form: dict[str, list[str]] = {}
            for name, value in fields:
                form.setdefault(name, []).append(value)
            return form
    raise AssertionError(f"no form deciding {part} for {student} on the page")


def _save(server, client, form: dict, score: str, json_reply: bool = True, **extra):
    headers = {"origin": ORIGIN, **({"accept": "application/json"} if json_reply else {})}
    return client.post(f"/override?token={server.token}", headers=headers, follow_redirects=False,
                       data={**form, "score": score, **extra})


def _queue(server, client) -> str:
    return client.get(f"/?token={server.token}&part=ds_principle").text


def _student_page(server, client, sid: str) -> str:
    return client.get(f"/student/{sid}?token={server.token}").text


def _regrade(root, sid: str, answer: str, score: float, when: str = "2026-01-03T00:00:00+00:00") -> None:
    """`hwkit grade` records a new notebook of the student's: another answer, another fingerprint."""
    from hwkit.gradebook import Gradebook, SubmissionResult
    from tests.review_support import code_part

    book = Gradebook(root)
    book.record(SubmissionResult(ASSIGNMENT, sid, "ok", "", "hash-resubmitted", [written_part(answer, score=score),
                                                                                 code_part()], graded_at=when))
    book.close()


def _decisions(root, sid: str) -> list:
    from hwkit.gradebook import Gradebook

    book = Gradebook(root)
    try:
        return book.override_history(ASSIGNMENT, sid)
    finally:
        book.close()


@pytest.mark.parametrize("json_reply", [True, False], ids=["page script", "plain form"])
def test_a_group_saved_from_a_page_loaded_before_a_member_was_regraded_is_refused(site, json_reply):
    root, ids, server, client = site
    group = _decision_form(_queue(server, client), ids[0], "ds_principle")
    assert group["student"] == [ids[0], ids[4]]
    _regrade(root, ids[4], "Pooling makes it smaller.", score=0.0)           # ids[4] resubmits a wrong answer
    before = _state(root)
    reply = _save(server, client, group, "2", json_reply=json_reply)
    assert reply.status_code == 409
    message = reply.json()["error"] if json_reply else reply.text
    assert (f"{ids[4]}'s answer changed since this page was loaded (regraded at 2026-01-03T00:00:00+00:00)"
            in message and "reload" in message and ids[0] not in message)
    assert _state(root) == before                                   # all or none: ids[0] is not decided either
    grades = read_grades(root / "graded" / ASSIGNMENT / "grades.csv")
    assert grades[ids[4]]["overridden"] == grades[ids[0]]["overridden"] == ""


def test_a_tab_loaded_before_another_tabs_decision_does_not_overwrite_it(site):
    root, ids, server, client = site
    tab_a = _decision_form(_student_page(server, client, ids[0]), ids[0], "ds_principle")
    tab_b = _decision_form(_student_page(server, client, ids[0]), ids[0], "ds_principle")
    assert _save(server, client, tab_a, "2", json_reply=False).status_code == 303
    before = _state(root)
    reply = _save(server, client, tab_b, "0")
    assert reply.status_code == 409 and not reply.json()["ok"]
    assert f"{ids[0]} was decided by ta-anna (2 on " in reply.json()["error"]
    assert "since this page was loaded" in reply.json()["error"]
    assert _state(root) == before and [o.score for o in _decisions(root, ids[0])] == [2.0]


def test_a_decision_made_in_a_shell_is_not_overwritten_by_a_page_loaded_before_it(site):
    root, ids, server, client = site
    group = _decision_form(_queue(server, client), ids[0], "ds_principle")
    hwkit("override", ASSIGNMENT, ids[4], "ds_principle", "0.5", "--course", root, "--grader", "ta-ben")
    before = _state(root)
    reply = _save(server, client, group, "2")
    assert reply.status_code == 409 and f"{ids[4]} was decided by ta-ben (0.5 on " in reply.json()["error"]
    assert _state(root) == before and _decisions(root, ids[0]) == []


@pytest.mark.parametrize("leave_out", ["every member", "one member"])
def test_a_post_that_does_not_say_what_its_page_showed_is_refused(site, leave_out):
    """An old page or a script posts scores without what the reviewer saw: refused, not applied blindly."""
    root, ids, server, client = site
    group = _decision_form(_queue(server, client), ids[0], "ds_principle")
    seen = [k for k in group if k.startswith("seen")]
    assert seen, "the page says what it showed"
    for name in (seen if leave_out == "every member" else seen[1:]):
        del group[name]
    before = _state(root)
    reply = _save(server, client, group, "2")
    assert reply.status_code == 400 and "reload" in reply.json()["error"]
    assert _state(root) == before


def test_a_page_corrects_its_own_decision_and_a_reloaded_page_saves(site):
    root, ids, server, client = site
    group = _decision_form(_queue(server, client), ids[0], "ds_principle")
    first = _save(server, client, group, "1")
    assert first.status_code == 200 and first.json()["saved"] == 2
    group.update({name: [value] for name, value in first.json()["seen"].items()})     # what the page script does
    second = _save(server, client, group, "2")
    assert second.status_code == 200, second.text
    assert [o.score for o in _decisions(root, ids[4])] == [1.0, 2.0]
    _regrade(root, ids[1], "Depthwise then pointwise: fewer multiplications.", score=1.0)
    stale = _decision_form(_student_page(server, client, ids[1]), ids[1], "ds_principle")
    _regrade(root, ids[1], "Now a third answer.", score=1.0, when="2026-01-04T00:00:00+00:00")
    assert _save(server, client, stale, "2").status_code == 409
    reloaded = _decision_form(_student_page(server, client, ids[1]), ids[1], "ds_principle")
    assert _save(server, client, reloaded, "2").status_code == 200
    [decision] = _decisions(root, ids[1])
    assert decision.score == 2 and decision.fingerprint == "fp-Now a third answer."
