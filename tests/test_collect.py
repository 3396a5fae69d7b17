"""An instructor downloads the submissions from Canvas or Moodle and runs `hwkit collect`: every notebook lands
in submitted/<assignment>/<student_id>/, what could not be matched is listed, collecting again changes
nothing, and a hostile zip is refused without writing anything."""
from __future__ import annotations

import json
import stat
import zipfile
from datetime import datetime, timezone

import pytest

from tests.support import hwkit, make_course

ROSTER = ("student_id,name,canvas_id,moodle_participant,email\n"
          "u01,Wang Fang,5001,301,wf@example.edu\n"
          "u02,Wang Fang,5002,302,\n"
          "u03,张伟,5003,303,\n")


def notebook(tag: str) -> bytes:
    return json.dumps({"cells": [{"cell_type": "code", "source": f"x = {tag!r}", "metadata": {}, "outputs": [],
                                  "execution_count": None}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


@pytest.fixture
def course(tmp_path):
    root = make_course(tmp_path, ["receptive-field"], ["u01"], generate_now=False)
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return root


def make_zip(path, entries: dict[str, bytes], *, date=(2026, 12, 1, 10, 0, 0)):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=date), data)
    return path


def filed(course, sid: str) -> bytes | None:
    path = course / "submitted" / "t" / sid / "t.ipynb"
    return path.read_bytes() if path.exists() else None


def test_canvas_download_is_filed_by_canvas_id(course, tmp_path):
    download = make_zip(tmp_path / "canvas.zip", {
        "wangfang_5001_71001_t.ipynb": notebook("u01"),
        "wangfang_5002_71002_t-1.ipynb": notebook("u02"),       # same name as u01: only the id tells them apart
        "zhangwei_LATE_5003_71003_homework.ipynb": notebook("u03"),
        "someone_9999_71009_t.ipynb": notebook("stranger"),
    })
    out = hwkit("collect", "t", download, "--course", course).stdout
    assert [filed(course, s) for s in ("u01", "u02", "u03")] == [notebook("u01"), notebook("u02"), notebook("u03")]
    assert "3 filed, 1 unmatched" in out and "1 late" in out and "canvas_id 9999" in out
    assert json.loads((course / "submitted" / "t" / "u03" / ".collected.json").read_text())["late"] is True


def test_moodle_download_by_participant_id_or_name(course, tmp_path):
    download = make_zip(tmp_path / "moodle.zip", {
        "Wang Fang_301_assignsubmission_file_/t.ipynb": notebook("u01"),
        "张伟_999_assignsubmission_file_/my homework.ipynb": notebook("u03"),   # unknown id, unique name
        "Wang Fang_888_assignsubmission_file_t.ipynb": notebook("?"),          # unknown id, ambiguous name
    })
    out = hwkit("collect", "t", download, "--course", course).stdout
    assert filed(course, "u01") == notebook("u01") and filed(course, "u03") == notebook("u03")
    assert filed(course, "u02") is None and "2 filed, 1 unmatched" in out


def test_a_folder_works_like_its_zip(course, tmp_path):
    folder = tmp_path / "unpacked" / "Wang Fang_302_assignsubmission_file_"
    folder.mkdir(parents=True)
    (folder / "t.ipynb").write_bytes(notebook("u02"))
    hwkit("collect", "t", tmp_path / "unpacked", "--course", course)
    assert filed(course, "u02") == notebook("u02")


def test_collecting_again_changes_nothing_and_older_never_replaces_newer(course, tmp_path):
    new = make_zip(tmp_path / "new.zip", {"wangfang_5001_71001_t.ipynb": notebook("second")}, date=(2026, 12, 2, 9, 0, 0))
    old = make_zip(tmp_path / "old.zip", {"wangfang_5001_71001_t.ipynb": notebook("first")}, date=(2026, 12, 1, 9, 0, 0))
    hwkit("collect", "t", new, "--course", course)
    before = sorted(p.name for p in (course / "submitted" / "t").rglob("*"))
    out = hwkit("collect", "t", new, "--course", course).stdout
    assert "unchanged" in out and sorted(p.name for p in (course / "submitted" / "t").rglob("*")) == before
    out = hwkit("collect", "t", old, "--course", course).stdout
    assert filed(course, "u01") == notebook("second") and "older" in out
    kept = [p.read_bytes() for p in (course / "submitted" / "t" / ".replaced" / "u01").iterdir()]
    assert notebook("first") in kept


def test_a_newer_download_replaces_and_keeps_what_it_replaced(course, tmp_path):
    hwkit("collect", "t", make_zip(tmp_path / "a.zip", {"wangfang_5001_71001_t.ipynb": notebook("first")},
                                   date=(2026, 12, 1, 9, 0, 0)), "--course", course)
    hwkit("collect", "t", make_zip(tmp_path / "b.zip", {"wangfang_5001_71001_t-1.ipynb": notebook("second")},
                                   date=(2026, 12, 2, 9, 0, 0)), "--course", course)
    assert filed(course, "u01") == notebook("second")
    kept = [p.read_bytes() for p in (course / "submitted" / "t" / ".replaced" / "u01").iterdir()]
    assert kept == [notebook("first")]


def test_resubmissions_in_one_download_latest_wins(course, tmp_path):
    download = make_zip(tmp_path / "canvas.zip", {"wangfang_5001_71001_t.ipynb": notebook("v1"),
                                                  "wangfang_5001_71001_t-2.ipynb": notebook("v3"),
                                                  "wangfang_5001_71001_t-1.ipynb": notebook("v2")})
    out = hwkit("collect", "t", download, "--course", course).stdout
    assert filed(course, "u01") == notebook("v3") and "2 duplicate(s)" in out
    kept = sorted(p.read_bytes() for p in (course / "submitted" / "t" / ".replaced" / "u01").iterdir())
    assert kept == sorted([notebook("v1"), notebook("v2")])


@pytest.mark.parametrize("bad", ["../escape.ipynb", "/etc/hwkit.ipynb", "a/../../escape.ipynb", "C:\\evil.ipynb"])
def test_entries_outside_the_download_refuse_the_zip(course, tmp_path, bad):
    download = make_zip(tmp_path / "bad.zip", {"wangfang_5001_71001_t.ipynb": notebook("u01"), bad: b"{}"})
    proc = hwkit("collect", "t", download, "--course", course, check=False)
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not (course / "submitted").exists() and not (tmp_path / "escape.ipynb").exists()


def test_a_symlink_entry_refuses_the_zip(course, tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("wangfang_5001_71001_t.ipynb")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    proc = hwkit("collect", "t", path, "--course", course, check=False)
    assert proc.returncode == 2 and "refused" in proc.stderr
    assert not (course / "submitted").exists()


def test_a_zip_bomb_is_refused_before_anything_is_extracted(course, tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(zipfile.ZipInfo("wangfang_5001_71001_t.ipynb"), "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 24)
            for _ in range(70):                           # 1.1 GiB of zeros, about 1 MB compressed
                f.write(chunk)
    proc = hwkit("collect", "t", path, "--course", course, check=False)
    assert proc.returncode == 2 and "zip bomb" in proc.stderr and "Traceback" not in proc.stderr
    assert not (course / "submitted").exists()


def test_an_entry_larger_than_it_declares_is_not_read_past_the_limit(course, tmp_path):
    """A declared size can lie; the read is bounded by the notebook limit whatever the header says."""
    from hwkit.collect import zip_entries
    from hwkit.course import HwkitError

    path = tmp_path / "liar.zip"
    big = b"{" + b" " * (21 << 20) + b"}"
    make_zip(path, {"wangfang_5001_71001_t.ipynb": big})
    raw = bytearray(path.read_bytes())
    # rewrite both size fields (local header and central directory) to claim 10 bytes
    for offset in [i for i in range(len(raw) - 4) if raw[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02")]:
        size_at = offset + (22 if raw[offset + 2] == 3 else 24)
        raw[size_at:size_at + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    entries = zip_entries(path)
    with pytest.raises((HwkitError, zipfile.BadZipFile)):
        entries[0].read()


def test_windows_names_in_gbk_are_decoded(course, tmp_path):
    path = tmp_path / "gbk.zip"
    name = "张伟_303_assignsubmission_file_/作业.ipynb"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name.encode("gbk").decode("cp437"))   # what a Windows zip tool writes
        zf.writestr(info, notebook("u03"))
    hwkit("collect", "t", path, "--course", course)
    assert filed(course, "u03") == notebook("u03")


def test_the_roster_keeps_unknown_columns(course):
    from hwkit.course import load_course

    u01 = load_course(course).roster[0]
    assert u01.column("canvas_id") == "5001" and u01.column("email") == "wf@example.edu" and u01.column("x") == ""


def test_not_a_zip_is_a_clear_error(course, tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    proc = hwkit("collect", "t", tmp_path / "x.zip", "--course", course, check=False)
    assert proc.returncode == 2 and "not a readable zip" in proc.stderr


def _corrupt(path, name: str) -> None:
    """Flip a byte of an entry's stored data, as a broken download would (its CRC no longer holds)."""
    raw = bytearray(path.read_bytes())
    at = raw.find(name.encode()) + len(name) + 20
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _flag_encrypted(path, name: str) -> None:
    """Set the "encrypted" bit of an entry in both of its headers (zipfile itself writes no encrypted entry)."""
    raw = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := raw.find(signature, start)) >= 0:
            start = at + 4
            if name.encode() in raw[at:at + 80 + len(name)]:
                raw[at + flag_at] |= 0x1
    path.write_bytes(bytes(raw))


def test_one_unreadable_entry_costs_only_itself(course, tmp_path):
    """A download with a broken entry, an encrypted one, an unsupported compression, an oversized older copy and
    a resubmission with a very long name: every readable notebook is still filed, and each bad entry is listed
    with its reason instead of the command stopping for the whole class."""
    path = tmp_path / "mixed.zip"
    padding = b"{" + b" " * (21 << 20) + b"}"                      # over the notebook limit, ~20 kB compressed
    long_name = "作" * 80 + ".ipynb"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("wangfang_5001_71001_t.ipynb", (2026, 12, 1, 9, 0, 0)), padding)
        zf.writestr(zipfile.ZipInfo("wangfang_5001_71001_t-1.ipynb", (2026, 12, 1, 10, 0, 0)), notebook("u01"))
        zf.writestr(zipfile.ZipInfo("wangfang_5002_71002_" + long_name, (2026, 12, 1, 9, 0, 0)), notebook("u02 old"))
        zf.writestr(zipfile.ZipInfo("wangfang_5002_71002_" + long_name.replace(".ipynb", "-1.ipynb"),
                                    (2026, 12, 1, 10, 0, 0)), notebook("u02"))
        zf.writestr(zipfile.ZipInfo("zhangwei_5003_71003_broken.ipynb", (2026, 12, 1, 9, 0, 0)), notebook("u03") * 50)
        zf.writestr(zipfile.ZipInfo("someone_5004_71004_locked.ipynb", (2026, 12, 1, 9, 0, 0)), notebook("x"))
    _corrupt(path, "zhangwei_5003_71003_broken.ipynb")
    _flag_encrypted(path, "someone_5004_71004_locked.ipynb")
    roster = course / "roster.csv"
    roster.write_text(roster.read_text(encoding="utf-8") + "u04,Li Si,5004,304,\n", encoding="utf-8")
    proc = hwkit("collect", "t", path, "--course", course, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert filed(course, "u01") == notebook("u01") and filed(course, "u02") == notebook("u02")
    assert filed(course, "u03") is None and filed(course, "u04") is None
    out = " ".join(proc.stdout.split())
    assert "2 filed" in out and "3 unmatched" in out, out
    assert sorted(p.read_bytes() for p in (course / "submitted" / "t" / ".replaced" / "u02").iterdir()) == [notebook("u02 old")]


def test_a_name_in_no_known_encoding_is_filed_with_its_time(course, tmp_path):
    """A download unpacked on Linux keeps a GBK file name as raw bytes: it is filed, its record (the submission
    time that late penalties read) is written, and collecting again leaves it as it is."""
    import os

    folder = tmp_path / "unpacked"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/wangfang_5001_71001_" + "作业".encode("gbk") + b".ipynb"
    with open(raw, "wb") as f:
        f.write(notebook("u01"))
    (folder / "wangfang_5002_71002_t.ipynb").write_bytes(notebook("u02"))
    on_time = 1_793_000_000                                           # 2026-10-25, before any due date
    for path in folder.iterdir():
        os.utime(path, (on_time, on_time))
    for _ in range(2):
        proc = hwkit("collect", "t", folder, "--course", course, check=False)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert filed(course, "u01") == notebook("u01") and filed(course, "u02") == notebook("u02")
    record = json.loads((course / "submitted" / "t" / "u01" / ".collected.json").read_text(encoding="utf-8"))
    assert record["submitted_at"].startswith("2026-10-2") and "作业" in record["source"], record


def test_a_lost_record_is_written_again_when_the_notebook_is_unchanged(course, tmp_path):
    download = make_zip(tmp_path / "canvas.zip", {"wangfang_5001_71001_t.ipynb": notebook("u01")})
    hwkit("collect", "t", download, "--course", course)
    record = course / "submitted" / "t" / "u01" / ".collected.json"
    kept = record.read_text(encoding="utf-8")
    record.write_text("")                                             # cut short by a crash
    out = hwkit("collect", "t", download, "--course", course).stdout
    assert record.read_text(encoding="utf-8") == kept and "unchanged" in out


def test_a_file_name_a_student_chose_cannot_claim_another_students_id(course, tmp_path):
    """The LMS writes the prefix of a Canvas name (and the folder of a Moodle one); the rest is the student's own
    file name and is never read as an id, however it looks."""
    download = make_zip(tmp_path / "canvas.zip", {
        "wangfang_5001_71001_a_302_assignsubmission_file_x.ipynb": notebook("u01"),   # u01 names u02's Moodle id
    })
    hwkit("collect", "t", download, "--course", course)
    assert filed(course, "u01") == notebook("u01") and filed(course, "u02") is None
    download = make_zip(tmp_path / "moodle.zip", {
        "张伟_303_assignsubmission_file_/wangfang_5001_71001_t.ipynb": notebook("u03"),  # u03 names u01's Canvas id
    })
    hwkit("collect", "t", download, "--course", course)
    assert filed(course, "u03") == notebook("u03") and filed(course, "u01") == notebook("u01")


def test_a_resubmission_collected_from_a_folder_replaces_one_from_a_zip(course, tmp_path):
    """A zip's times carry no zone (the course's local time), a folder's are UTC: a resubmission 20 minutes
    later is newer whichever way each arrived, and replaces the first."""
    import os

    toml = course / "assignments" / "t.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('title = "Test"', 'title = "Test"\ndue = "2026-12-11T00:00:00+08:00"'),
                    encoding="utf-8")
    first = make_zip(tmp_path / "first.zip", {"wangfang_5001_71001_t.ipynb": notebook("first")},
                     date=(2026, 12, 10, 23, 30, 0))                          # 23:30 in +08:00 = 15:30 UTC
    hwkit("collect", "t", first, "--course", course)
    folder = tmp_path / "later"
    folder.mkdir()
    again = folder / "wangfang_5001_71002_t-1.ipynb"
    again.write_bytes(notebook("second"))
    at = datetime(2026, 12, 10, 15, 50, tzinfo=timezone.utc).timestamp()     # 23:50 in +08:00
    os.utime(again, (at, at))
    out = hwkit("collect", "t", folder, "--course", course).stdout
    assert filed(course, "u01") == notebook("second") and "replaced" in out, out
    record = json.loads((course / "submitted" / "t" / "u01" / ".collected.json").read_text(encoding="utf-8"))
    assert datetime.fromisoformat(record["submitted_at"]) == datetime(2026, 12, 10, 15, 50, tzinfo=timezone.utc)
