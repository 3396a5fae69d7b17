"""End to end in a real browser (Debian's chromium, driven by Selenium through /usr/bin/chromedriver): a TA grades
a course, opens `hwkit review`, scores a group of identical written answers with the keyboard, overrides a code
part from a student's page, and finds both decisions in grades.csv and the feedback pages; a forced regrade keeps
them. The screenshot of the queue is docs/review.png (README, "Reviewing").

If the browser cannot start, this test FAILS with the reason: CI installs chromium (scripts/setup.sh)."""
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import HWKIT, hwkit, make_course, read_grades, release_notebook, set_answer_cell, solution_notebook, submit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WRITTEN = ('ds_principle = "A depthwise conv filters every channel on its own with one KxK kernel, then a 1x1 '
           'pointwise conv mixes the channels; splitting it in two steps needs far fewer parameters."')


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed ({exc}); run scripts/setup.sh")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install -y chromium chromium-driver (scripts/setup.sh does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # noqa: BLE001 - the reason is the test's failure message
        pytest.fail(f"chromium could not start: {type(exc).__name__}: {str(exc)[:500]}")


def _start_review(root: Path):
    proc = subprocess.Popen([HWKIT, "review", "t", "--course", str(root), "--grader", "ta-e2e"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.time() + 60
    while time.time() < deadline:
        found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", "".join(lines))
        if found:
            return proc, found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"hwkit review printed no URL: {''.join(lines)[-500:]}")


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait(condition, what: str, seconds: float = 15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - the page is being replaced; ask again
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_ta_reviews_in_the_browser(tmp_path):
    from selenium.webdriver.common.by import By

    root = make_course(tmp_path, ["receptive-field", "depthwise-separable"], ["w1", "w2", "w3"])
    for sid in ("w1", "w2"):                     # the same written answer: one answer group
        submit(root, sid, set_answer_cell(release_notebook(root, sid), "ds_principle", WRITTEN))
    submit(root, "w3", solution_notebook(root, "w3"))
    hwkit("grade", "t", "--course", root, "--no-sandbox", "--jobs", "2")
    grades = read_grades(root / "graded" / "t" / "grades.csv")
    assert grades["w1"]["needs_review"] == "yes" and grades["w3"]["total"] == grades["w3"]["max"]

    browser = _browser()
    proc, url = _start_review(root)
    try:
        browser.get(url)
        group = browser.find_element(By.CSS_SELECTOR, ".group")
        assert "ds_principle" in group.text and "2 answer(s)" in group.text
        assert browser.find_elements(By.CSS_SELECTOR, ".group mark"), "matched concepts are highlighted"
        browser.save_screenshot(str(REPO / "docs" / "review.png"))
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("j")                      # keyboard navigation moves the selection and back
        body.send_keys("k")
        assert "current" in group.get_attribute("class")
        body.send_keys("c")                      # c: write a comment, Escape, then 2: the score for the group
        browser.switch_to.active_element.send_keys("Clear and complete.")
        browser.switch_to.active_element.send_keys("\ue00c")          # Escape
        body.send_keys("2")
        _wait(lambda: "done" in group.get_attribute("class"), "the group to be saved")
        assert "saved 2 for 2" in group.text

        browser.get(url.replace("/?", "/student/w3?"))
        row = browser.find_element(By.ID, "part-receptive_field")
        score = row.find_element(By.NAME, "score")
        score.clear()
        score.send_keys("3")
        row.find_element(By.NAME, "comment").send_keys("Regrade: the padding is off by one in layer 2.")
        row.find_element(By.TAG_NAME, "button").click()
        _wait(lambda: "set by ta-e2e" in browser.find_element(By.ID, "part-receptive_field").text,
              "the student page to show the override")
    finally:
        browser.quit()
        _stop(proc)

    def check_outputs():
        grades = read_grades(root / "graded" / "t" / "grades.csv")
        assert grades["w1"]["overridden"] == grades["w2"]["overridden"] == "ds_principle=2"
        assert "receptive_field=3" in grades["w3"]["overridden"]
        assert float(grades["w3"]["total"]) == float(grades["w3"]["max"]) - 2
        page = (root / "graded" / "t" / "w1" / "feedback.html").read_text()
        assert "Clear and complete." in page and "set by ta-e2e" in page
        page = (root / "graded" / "t" / "w3" / "feedback.html").read_text()
        assert "Regrade: the padding is off by one in layer 2." in page and "3 / 5" in page

    check_outputs()
    hwkit("grade", "t", "--course", root, "--no-sandbox", "--jobs", "2", "--force")
    check_outputs()                              # unchanged answers: every decision survives the regrade


@pytest.mark.slow
def test_a_page_left_open_tells_the_ta_what_changed_and_saves_nothing(tmp_path):
    """A TA leaves the queue open; meanwhile another TA decides one member of a group from a shell. The TA's key
    press is refused on the page with who decided it, nothing is written; after a reload the TA decides the rest,
    then changes that decision with a second key press."""
    from selenium.webdriver.common.by import By

    from hwkit.gradebook import Gradebook
    from tests.review_support import synthetic_course

    root, ids = synthetic_course(tmp_path, students=8)
    browser = _browser()
    proc, url = _start_review(root)

    def group_of(sid):
        return browser.find_element(By.XPATH, f'//li[@data-student="{sid}"]/ancestor::section[@class="group" or '
                                              f'contains(@class, "group ")]')

    def decisions(sid):
        book = Gradebook(root)
        try:
            return [o.score for o in book.override_history("t", sid)]
        finally:
            book.close()

    try:
        browser.get(url)
        first = browser.find_element(By.CSS_SELECTOR, ".group")
        members = [li.get_attribute("data-student") for li in first.find_elements(By.CSS_SELECTOR, "li[data-student]")]
        assert members == [ids[0], ids[4]]
        hwkit("override", "t", ids[4], "ds_principle", "0.5", "--course", root, "--grader", "ta-ben")
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("2")
        _wait(lambda: "was decided by ta-ben" in first.find_element(By.CSS_SELECTOR, ".error").text,
              "the page to say the group changed")
        assert f"{ids[4]} was decided by ta-ben (0.5 on " in first.text and "reload the page" in first.text
        assert "done" not in first.get_attribute("class")
        assert decisions(ids[0]) == [] and decisions(ids[4]) == [0.5]

        browser.get(url)                          # reloaded: ids[4] is decided, ids[0] is left alone in its group
        group_of(ids[0]).find_element(By.TAG_NAME, "h2").click()
        browser.find_element(By.TAG_NAME, "body").send_keys("1")
        _wait(lambda: "saved 1 for 1" in group_of(ids[0]).text, "the group to be saved")
        group_of(ids[0]).find_element(By.TAG_NAME, "h2").click()
        browser.find_element(By.TAG_NAME, "body").send_keys("2")
        _wait(lambda: "saved 2 for 1" in group_of(ids[0]).text, "the decision to be changed")
    finally:
        browser.quit()
        _stop(proc)
    assert decisions(ids[0]) == [1.0, 2.0] and decisions(ids[4]) == [0.5]
