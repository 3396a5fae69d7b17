"""The `hwkit` command line. Each command parses options and calls one function of its stage module;
user errors (HwkitError) print one line on stderr and exit 2, never a traceback."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwkit.course import HwkitError, check_lang, load_course

console = Console()
err_console = Console(stderr=True)


def _warn(text: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


course_option = click.option("--course", "course_dir", type=click.Path(file_okay=False, path_type=Path),
                             default=Path("."), show_default="current directory", help="Course directory.")


def _ids(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


class HwkitGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HwkitError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(2)


@click.group(cls=HwkitGroup)
@click.version_option(package_name="hwkit")
def main():
    """hwkit: randomized homework generation and sandboxed autograding."""
    # References are tiny tensors: one intra-op thread is faster and leaves the cores to the kernels.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lang", default="zh", help="Default language of the course: zh or en.")
@click.option("--name", default=None, help="Course name (default: the folder's name).")
@click.option("--example", is_flag=True, help="The bundled example course (a published secret that matches submissions/).")
def init(directory: Path, lang: str, name: str | None, example: bool):
    """Create a course directory: hwkit.toml (with a fresh secret), roster.csv, assignments/."""
    from hwkit.scaffold import init_course

    root = init_course(directory, lang=lang, name=name, example=example)
    console.print(f"Created course in [bold]{root}[/bold]: hwkit.toml, roster.csv, assignments/")


@main.command()
@click.argument("assignment")
@course_option
@click.option("--lang", default=None, help="zh or en (default: the course's language).")
@click.option("--students", default=None, help="Comma-separated student ids (default: the whole roster).")
@click.option("--force", is_flag=True, help="Replace a release made in the other language without a warning.")
def generate(assignment: str, course_dir: Path, lang: str | None, students: str | None, force: bool):
    """Write every student's notebook, solution notebook and the answer key."""
    from hwkit.generate import generate as build, released_languages, write_generated

    course = load_course(course_dir)
    lang = check_lang(lang, course)
    spec = course.assignment(assignment)
    roster = course.students(_ids(students))
    if not roster:
        raise HwkitError(f"{course_dir / 'roster.csv'}: the roster is empty; add students first")
    other = released_languages(course, assignment, roster) - {lang}
    if other and not force:     # same variants, other words: students who already downloaded keep the old notebook
        _warn(f"{course_dir / 'release' / assignment}: already released in {', '.join(sorted(other))}; the {lang} "
              "notebooks replace them (same variants; students who downloaded the old ones can keep working in "
              "them). --force: no warning")
    start = time.perf_counter()
    generated = build(course, spec, lang, roster)
    write_generated(course, spec, generated)
    console.print(f"Generated {assignment} ({lang}) for {len(generated)} students in "
                  f"{time.perf_counter() - start:.1f}s: {course_dir / 'release' / assignment}/, "
                  f"{course_dir / 'source' / assignment}/answers.json")


@main.command()
@click.option("--lang", default="en", help="Language of the titles shown first.")
def problems(lang: str):
    """List the problem bank."""
    from hwkit.bank import load_bank

    table = Table("id", "topic", "title (en)", "title (zh)", "parts", "points")
    for problem in load_bank().values():
        table.add_row(problem.id, problem.topic, problem.title["en"], problem.title["zh"],
                      ", ".join(problem.part_ids()), f"{problem.points:g}")
    console.print(table)


def tls_options(command):
    """--tls-ca-file, --tls-cert, --tls-key: a tls:// Dask scheduler's certificates (distributed.security.Security)."""
    for name, words in (("--tls-key", "this grader's private key (PEM)"),
                        ("--tls-cert", "this grader's certificate (PEM), signed by the cluster's CA"),
                        ("--tls-ca-file", "the CA certificate that signed the scheduler's and workers' certificates")):
        command = click.option(name, type=click.Path(dir_okay=False, path_type=Path), default=None,
                               help=f"With a tls:// cluster: {words}.")(command)
    return command


def _cluster_module(name: str):
    """hwkit.cluster.NAME, or one line saying how to install Dask (the extra hwkit[cluster])."""
    import importlib

    try:
        import distributed  # noqa: F401
    except ImportError:
        raise HwkitError("--cluster needs Dask's `distributed`: pip install 'hwkit[cluster]' (on this machine and "
                         "on every worker)") from None
    return importlib.import_module(f"hwkit.cluster.{name}")


def _cluster_target(address, tls_ca_file, tls_cert, tls_key):
    if not address:
        raise HwkitError("--tls-* options are for a cluster: add --cluster tls://HOST:PORT")
    return _cluster_module("client").ClusterTarget(address, tls_ca_file, tls_cert, tls_key)


@main.command()
@click.argument("assignment")
@course_option
@click.option("--submissions", "submissions_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of <student_id>/*.ipynb (default: COURSE/submitted/ASSIGNMENT).")
@click.option("--jobs", type=int, default=None, help="Submissions graded at once (default: the number of cores + 1).")
@click.option("--force", is_flag=True, help="Regrade submissions that are already graded and unchanged.")
@click.option("--students", default=None, help="Comma-separated student ids to grade.")
@click.option("--no-sandbox", is_flag=True, help="Run student code without the sandbox (trusted code only).")
@click.option("--warm/--cold", default=True, show_default=True,
              help="Warm: fork each sandboxed kernel from a per-worker zygote that has imported torch (same "
                   "jail, same limits); cold: start every kernel from scratch.")
@click.option("--similarity", "with_similarity", is_flag=True,
              help="Afterwards, write the copying evidence report (as `hwkit similarity`).")
@click.option("--cluster", "cluster", default=None, metavar="tcp://HOST:PORT",
              help="Grade on a Dask cluster (hwkit[cluster]) whose scheduler is here; --jobs is then lanes per "
                   "worker (default: the worker's threads + 1). This machine still writes the gradebook.")
@tls_options
def grade(assignment, course_dir, submissions_dir, jobs, force, students, no_sandbox, warm, with_similarity,
          cluster, tls_ca_file, tls_cert, tls_key):
    """Grade a folder of submissions in sandboxed kernels; write the gradebook, feedback and grades.csv."""
    from hwkit.grading.main import main as grade_main

    runner = None
    if cluster or tls_ca_file or tls_cert or tls_key:
        runner = _cluster_module("client").ClusterRunner(_cluster_target(cluster, tls_ca_file, tls_cert, tls_key),
                                                         jobs=jobs, sandbox=not no_sandbox, warm=warm)
    summary = grade_main(course_dir=course_dir, assignment_id=assignment, submissions_dir=submissions_dir,
                         jobs=jobs, force=force, students=_ids(students), sandbox=not no_sandbox, console=console,
                         warm=warm, runner=runner)
    console.print(summary)
    if with_similarity:
        from hwkit.similarity import main as similarity_main

        console.print(similarity_main(course_dir=course_dir, assignment_id=assignment), highlight=False)


@main.command()
@click.argument("assignment")
@course_option
@click.option("--format", "fmt", type=click.Choice(["csv", "canvas", "moodle"]), default="csv")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--allow-provisional", is_flag=True,
              help="Export even while parts still need review (their scores are provisional).")
@click.option("--template", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Fill the LMS's own file: Canvas's gradebook export, or Moodle's grading worksheet; every "
                   "other column and row is kept.")
@click.option("--column", default=None, help="The template's column for this assignment (default: found by name).")
def export(assignment, course_dir, fmt, output, allow_provisional, template, column):
    """Export final grades in an LMS's import layout (refused while parts still need review)."""
    from hwkit.report import export_grades

    path, warning = export_grades(load_course(course_dir), assignment, fmt, output, allow_provisional,
                                  template, column)
    if warning:
        _warn(warning)
    console.print(f"Wrote {path}")


# "-1" must reach the score's own check (a clear message), not be read as an option.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("assignment")
@click.argument("student")
@click.argument("part")
@click.argument("score")
@course_option
@click.option("--comment", default="", help="Shown to the student on the feedback page.")
@click.option("--grader", default=None, help="Who decides (default: the OS user).")
def override(assignment, student, part, score, course_dir, comment, grader):
    """Set the final score of one part (PART: a part id, or problem/part); kept across regrades while the
    answer is unchanged."""
    from hwkit.overrides import Decision, decide

    [saved] = decide(load_course(course_dir), assignment, [Decision(student, part, score, comment)], grader)
    click.echo(f"{assignment} {saved.student_id} {saved.problem}/{saved.part}: {saved.replaced_score:g} -> "
               f"{saved.score:g} (by {saved.grader}); grades.csv and the feedback page are updated")


@main.command()
@click.argument("assignment")
@course_option
@click.option("--list", "as_list", is_flag=True, help="Print what needs review, one part a line, and exit.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--grader", default=None, help="Who decides (default: the OS user).")
def review(assignment, course_dir, as_list, port, grader):
    """Review what needs a person: a local web page (127.0.0.1, with a token), or --list."""
    course = load_course(course_dir)
    if as_list:
        from hwkit.review.listing import review_list

        lines, code = review_list(course, assignment)
        for line in lines:
            click.echo(line)
        sys.exit(code)
    from hwkit.review.app import serve

    serve(course, assignment, port, grader, echo=click.echo)


@main.command()
@click.argument("assignment")
@click.argument("download", type=click.Path(path_type=Path))
@course_option
def collect(assignment, download, course_dir):
    """File an LMS's submission download (Canvas or Moodle zip, or its folder) into submitted/ASSIGNMENT/."""
    from hwkit.collect import main as collect_main

    sys.exit(collect_main(course_dir=course_dir, assignment_id=assignment, download=download, console=console))


@main.command()
@click.argument("assignment")
@course_option
def similarity(assignment, course_dir):
    """Rank pairs of students by copying evidence (cross-variant answers, shared rare wrong answers, code and
    written answers); writes graded/ASSIGNMENT/similarity.html and similarity.csv. Evidence, never a penalty."""
    from hwkit.similarity import main as similarity_main

    console.print(similarity_main(course_dir=course_dir, assignment_id=assignment), highlight=False)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--part", "parts", multiple=True, help="Only this part (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--lang", default=None, help="Language of the hints (default: the notebook's).")
def check(notebook, parts, as_json, lang):
    """Run the public checks on your own notebook before submitting."""
    from hwkit.checkcmd import main as check_main

    sys.exit(check_main(notebook=notebook, parts=list(parts), as_json=as_json, lang=lang, console=console))


@main.group()
def sandbox():
    """The sandbox that runs student code."""


@sandbox.command()
def doctor():
    """Check that this machine can run sandboxed kernels, and say what to install if not."""
    from hwkit.sandbox import doctor as run_doctor

    ok_all = True
    for name, ok, message in run_doctor():
        ok_all &= ok
        console.print(f"[{'green' if ok else 'red'}]{'ok ' if ok else 'NO '}[/] {name}: {message}", highlight=False)
    console.print("The sandbox is ready." if ok_all else "The sandbox is NOT fully available; see the lines above.")
    sys.exit(0 if ok_all else 1)


@main.group()
def cluster():
    """A Dask cluster that grades (hwkit grade --cluster)."""


@cluster.command("doctor")
@click.argument("address")
@tls_options
def cluster_doctor(address, tls_ca_file, tls_cert, tls_key):
    """Can the workers of the Dask cluster at ADDRESS grade for this machine? Same hwkit and software, the bank,
    and the sandbox checked on each worker."""
    doctor = _cluster_module("doctor")
    report, ok_all = doctor.cluster_doctor(_cluster_target(address, tls_ca_file, tls_cert, tls_key))
    for heading, lines in report:
        console.print(f"[bold]{escape(heading)}[/bold]", highlight=False)
        for ok, text in lines:
            mark = "    " if ok is None else ("[green]ok [/] " if ok else "[red]NO [/] ")
            console.print(f"  {mark}{escape(text)}", highlight=False, soft_wrap=True)
    console.print("The cluster is ready to grade." if ok_all else "The cluster is NOT ready; see the NO lines above.")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
