"""`hwkit review`: a local web app (Starlette, server-rendered jinja2 pages with autoescape, a little JS) for the
decisions a person must make: the review queue with answer groups, and every student's page, where any part can
be overridden. Scores are saved through hwkit.overrides, as `hwkit override` saves them.

Served on 127.0.0.1 only. Every request must carry the random token printed on start (as Jupyter's); a POST from
another origin is refused, and so is a Host header that is not this server (DNS rebinding)."""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from hwkit.course import Course, HwkitError
from hwkit.figures import part_figures
from hwkit.gradebook import Gradebook, PartResult
from hwkit.notebooks import answer_sources, read_notebook
from hwkit.overrides import Decision, Seen, StaleDecision, record_decisions
from hwkit.review import queue as rq

PAGE_GROUPS = 20          # answer groups per queue page (a page stays fast at 1,000 students)
TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class ReviewServer:
    """What the pages need: the course, the assignment, the token, who is reviewing, where it listens."""
    course: Course
    assignment: str
    token: str
    port: int
    grader: str | None = None

    def __post_init__(self):
        # One connection, used under the lock: it writes the decisions and caches what it read. Its data_version
        # changes only when another process commits (a regrade, `hwkit override`); then the students whose
        # stamps changed are read again, not the class.
        self.lock = threading.RLock()
        self.book = Gradebook(self.course.root, threads=True)
        self.cached: tuple = (None, [], {})            # (data_version, final results, {filters: answer groups})
        self.stamps: dict[str, tuple[int, int]] = {}   # of the results cached (Gradebook.stamps)
        self.histogram_due = threading.Event()
        self.answers = _load_answers(self.course, self.assignment)
        self.solutions: dict[str, dict] = {}
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.globals.update(token=self.token, assignment=self.assignment, link=self.link,
                                segments=highlight_segments, has_similarity=self.similarity_path().is_file,
                                seen_field=seen_field, seen_token=seen_token)

    def similarity_path(self) -> Path:
        return self.course.root / "graded" / self.assignment / "similarity.html"

    def link(self, path: str, **query) -> str:
        """A link inside the app, token included."""
        return path + "?" + urlencode({**{k: v for k, v in query.items() if v not in (None, "")}, "token": self.token})

    @property
    def origins(self) -> set[str]:
        return {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}

    def results(self) -> list:
        """The assignment's final results; when another process changed the gradebook, the changed ones are
        read again."""
        with self.lock:
            version = self.book.data_version()
            if self.cached[0] != version:
                self.cached = (version, self._refreshed(self.cached[1]), {})
            return self.cached[1]

    def _refreshed(self, cached: list) -> list:
        stamps = self.book.stamps(self.assignment)
        changed = [sid for sid, stamp in stamps.items() if self.stamps.get(sid) != stamp]
        by_student = {r.student_id: r for r in cached if r.student_id in stamps}
        if len(changed) > len(stamps) // 2:
            by_student = {r.student_id: r for r in self.book.results(self.assignment)}
        elif changed:
            by_student.update((r.student_id, r) for r in self.book.results(self.assignment, changed))
        self.stamps = stamps
        return [by_student[sid] for sid in sorted(by_student)]

    def groups(self, problem: str, part: str, flag: str) -> tuple[list, list]:
        """(every item awaiting review, the answer groups of those matching the filters), cached with the results."""
        with self.lock:
            results = self.results()
            key = (problem, part, flag)
            if key not in self.cached[2]:
                self.cached[2][key] = (rq.review_items(results),
                                       rq.answer_groups(rq.review_items(results, problem, part, flag)))
            return self.cached[2][key]

    def history(self, student_id: str) -> list:
        with self.lock:
            return self.book.override_history(self.assignment, student_id)

    def save(self, decisions: list[Decision]) -> tuple[list, int, dict[str, str]]:
        """Record decisions (all or none); returns the overrides, how many parts still await review and what a
        page that made them now shows of the decided parts ({seen field: seen token})."""
        with self.lock:
            saved, final = record_decisions(self.course, self.book, self.results(), decisions, self.grader,
                                            histogram=False)
            self.cached, self.stamps = (self.book.data_version(), final, {}), self.book.stamps(self.assignment)
        self.histogram_due.set()      # the histogram (matplotlib, slow) is redrawn in the background
        return saved, len(rq.review_items(final)), _seen_after(final, saved)

    def solution(self, student_id: str) -> dict:
        """The student's solution notebook (source/ASSIGNMENT/STUDENT/), read once; {} when there is none."""
        if student_id not in self.solutions:
            path = self.course.root / "source" / self.assignment / student_id / f"{self.assignment}-solution.ipynb"
            nb, _ = read_notebook(path) if path.is_file() else (None, "")
            self.solutions[student_id] = nb or {}
        return self.solutions[student_id]

    def executed(self, student_id: str) -> str | None:
        """The executed notebook grading kept for this student (its figures: a diagram drawn in an answer cell)."""
        kept = self.course.root / "graded" / self.assignment / student_id / f"{self.assignment}.ipynb"
        try:
            return kept.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def render(self, name: str, **context) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context))


def _load_answers(course: Course, assignment: str) -> dict:
    path = course.root / "source" / assignment / "answers.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("students", {})
    except (OSError, ValueError, AttributeError):
        return {}


def seen_field(student_id: str) -> str:
    """The form field in which a page says what it showed of a student's part."""
    return f"seen:{student_id}"


def seen_token(part: PartResult) -> str:
    """What a page shows of a part: the id of its latest decision (0: none) and its answer's fingerprint."""
    return f"{part.decision_id}:{part.fingerprint}"


def read_seen(form, student_id: str) -> Seen:
    """What the page that posted `form` showed of the student's part; a post that does not say (a page from
    before this check, a script) is refused rather than decided on whatever the answer is now."""
    decision_id, colon, fingerprint = str(form.get(seen_field(student_id)) or "").partition(":")
    if not colon or not decision_id.isdigit():
        raise HwkitError(f"this page does not say which answer of {student_id[:60]} it showed (it is from an older "
                         "hwkit review, or not a review page): reload it and decide again")
    return Seen(fingerprint, int(decision_id))


def _seen_after(final: list, saved: list) -> dict[str, str]:
    """{seen field: seen token} of the parts just decided, so that the page can change its decision again."""
    results = {r.student_id: r for r in final}
    return {seen_field(o.student_id): seen_token(p) for o in saved for p in results[o.student_id].parts
            if (p.problem, p.part) == (o.problem, o.part)}


def highlight_segments(text: str, words: list[str]) -> list[tuple[str, bool]]:
    """The text cut into (piece, is a matched concept word) for <mark>; matching ignores case."""
    words = sorted({w for w in words if w.strip()}, key=len, reverse=True)
    if not words:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(text):
        out += [(text[last:m.start()], False), (m.group(0), True)]
        last = m.end()
    return out + [(text[last:], False)]


class Guard:
    """ASGI middleware: the token on every request, this server's Host, no cross-origin POST; and a
    Server-Timing header with the server-side milliseconds (the benchmark reads it)."""

    def __init__(self, app, server: ReviewServer):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        refusal = self.refusal(Request(scope))
        if refusal is not None:
            return await PlainTextResponse(refusal, status_code=403)(scope, receive, send)

        async def timed(message):
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={ms:.1f}".encode()),
                                      (b"referrer-policy", b"same-origin"), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, timed)

    def refusal(self, request: Request) -> str | None:
        s = self.server
        if request.headers.get("host", "") not in {urlsplit(o).netloc for o in s.origins}:
            return "refused: this review server answers only on its own address (127.0.0.1)"
        given = request.query_params.get("token") or request.headers.get("x-review-token") or ""
        if not secrets.compare_digest(given.encode(), s.token.encode()):
            return ("refused: the token is missing or wrong; open the URL that `hwkit review` printed "
                    "(it ends with ?token=...)")
        if request.method not in ("GET", "HEAD", "POST"):
            return f"refused: method {request.method}"
        origin = request.headers.get("origin")
        if request.method == "POST" and origin is not None and origin not in s.origins:
            return f"refused: a request from another origin ({origin[:80]}) may not change scores"
        if request.method == "POST" and request.headers.get("sec-fetch-site", "same-origin") not in (
                "same-origin", "none"):
            return "refused: a cross-site request may not change scores"
        return None


def queue_page(server: ReviewServer, request: Request) -> Response:
    q = request.query_params
    problem, part, flag = q.get("problem", ""), q.get("part", ""), q.get("flag", "")
    try:
        page = max(0, int(q.get("page", "0")))
    except ValueError:
        page = 0
    results = server.results()
    every, groups = server.groups(problem, part, flag)
    items = [i for g in groups for i in g.items]
    shown = groups[page * PAGE_GROUPS:(page + 1) * PAGE_GROUPS]
    views = {g.key: rq.rubric_view(g.problem, g.part) for g in shown}
    return server.render("queue.html", groups=shown, views=views, left=len(every), matching=len(items),
                         counts=rq.counts(every), filters={"problem": problem, "part": part, "flag": flag},
                         page=page, pages=max(1, -(-len(groups) // PAGE_GROUPS)), hits=rq.concept_hits,
                         model=lambda item: model_answer(server, item.student_id, item.part.problem, item.part.part),
                         students=len(results))


def model_answer(server: ReviewServer, student_id: str, problem: str, part: str) -> str:
    """The part's answer cells in the student's own solution notebook (their variant, the course's language),
    else the rubric's reference, else the student's reference value from answers.json."""
    text = "\n\n".join(answer_sources(server.solution(student_id), part)).strip()
    if text:
        return text
    view = rq.rubric_view(problem, part)
    if view is not None:
        return view.model_answer
    value = ((server.answers.get(student_id) or {}).get(problem) or {}).get("answers", {}).get(part)
    return "" if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def student_page(server: ReviewServer, request: Request) -> Response:
    sid = request.path_params["student"]
    result = next((r for r in server.results() if r.student_id == sid), None)
    if result is None:
        return PlainTextResponse(f"{sid[:60]!r} has no graded submission of {server.assignment}", status_code=404)
    return server.render("student.html", result=result, history=server.history(sid),
                         figures=part_figures(server.executed(sid)), flag=lambda p: rq.review_flag(result, p),
                         hits=rq.concept_hits, view=rq.rubric_view,
                         model=lambda p: model_answer(server, sid, p.problem, p.part))


async def save_override(server: ReviewServer, request: Request) -> Response:
    """One score for one part of one or more students (an answer group), from a form or the page's script."""
    form = await request.form()
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        decisions = [Decision(s, str(form.get("part", "")), str(form.get("score", "")), str(form.get("comment", "")),
                              read_seen(form, s)) for s in map(str, form.getlist("student"))]
        saved, left, seen = await run_in_threadpool(server.save, decisions)
    except HwkitError as exc:
        status = 409 if isinstance(exc, StaleDecision) else 400
        if wants_json:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=status)
        return PlainTextResponse(f"not saved: {exc}", status_code=status)
    if wants_json:
        return JSONResponse({"ok": True, "saved": len(saved), "score": saved[0].score, "left": left, "seen": seen})
    target = str(form.get("next", "/"))
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    return RedirectResponse(server.link(urlsplit(target).path, **dict(_query(target))), status_code=303)


def _query(target: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return [(k, v) for k, v in parse_qsl(urlsplit(target).query) if k != "token"]


def _histogram_worker(server: ReviewServer) -> None:
    from hwkit.report import write_histogram

    while True:
        server.histogram_due.wait()
        time.sleep(1.0)             # a burst of decisions redraws once
        server.histogram_due.clear()
        try:
            write_histogram(server.course, server.assignment, server.results())
        except Exception:  # noqa: BLE001 - the next decision or `hwkit grade` redraws it
            pass


def similarity_page(server: ReviewServer, request: Request) -> Response:
    """The copying report (`hwkit similarity`), behind the same token as everything here."""
    path = server.similarity_path()
    if not path.is_file():
        return PlainTextResponse(f"no similarity report yet: run `hwkit similarity {server.assignment}`",
                                 status_code=404)
    return HTMLResponse(path.read_text(encoding="utf-8"))


def build_app(server: ReviewServer) -> Starlette:
    app = Starlette(routes=[
        Route("/", partial(queue_page, server)),
        Route("/similarity", partial(similarity_page, server)),
        Route("/student/{student}", partial(student_page, server)),
        Route("/override", partial(save_override, server), methods=["POST"]),
    ])
    return Guard(app, server)


def serve(course: Course, assignment: str, port: int = 0, grader: str | None = None, echo=print) -> None:
    """Bind 127.0.0.1 (a random free port unless `port`), print the URL with its token, serve until ^C."""
    import socket

    import uvicorn

    book = Gradebook(course.root)
    try:
        if not book.results(assignment, final=False):
            raise HwkitError(f"{book.path}: no grades for {assignment}; run `hwkit grade {assignment}` first")
    finally:
        book.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        raise HwkitError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    sock.listen(64)
    server = ReviewServer(course, assignment, secrets.token_urlsafe(24), sock.getsockname()[1], grader)
    threading.Thread(target=_histogram_worker, args=(server,), daemon=True, name="hwkit-histogram").start()
    echo(f"Reviewing {assignment}: open http://127.0.0.1:{server.port}/?token={server.token}")
    echo("Only this URL (with its token) opens the page. Press Ctrl+C to stop.")
    config = uvicorn.Config(build_app(server), log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if server.histogram_due.is_set():           # a redraw still pending at ^C
            from hwkit.report import write_histogram

            write_histogram(course, assignment, server.results())
