"""`hwkit init DIR`: a new course directory with a fresh secret, a sample roster and the bundled assignments."""
from __future__ import annotations

import shutil
from pathlib import Path

from hwkit.bank import templates_dir
from hwkit.course import CONFIG_NAME, ROSTER_NAME, HwkitError, SandboxLimits, new_secret

SAMPLE_ROSTER = ["s001,Li Lei", "s002,Han Meimei", "s003,Zhang Wei", "s004,Wang Fang"]
# The bundled example course uses this published secret so that the sample submissions in submissions/
# match its variants. A real course gets a fresh random secret from `hwkit init`.
EXAMPLE_SECRET = "example-course-public-secret-do-not-use-for-a-real-course"


def _config_text(name: str, lang: str, secret: str) -> str:
    notes = {"torch_threads": "   # 0: cores shared out among the kernels running at once"}
    limits = "\n".join(f"{k} = {v}{notes.get(k, '')}" for k, v in vars(SandboxLimits()).items())
    return (f'[course]\nname = "{name}"\n# Keep this secret: it decides every student\'s variant.\n'
            f'secret = "{secret}"\nlang = "{lang}"   # default language: zh or en\n\n'
            f"[sandbox]\n{limits}\n")


def init_course(root: Path, *, lang: str = "zh", name: str | None = None, example: bool = False) -> Path:
    root = Path(root)
    if (root / CONFIG_NAME).exists():
        raise HwkitError(f"{root / CONFIG_NAME}: a course already exists here; choose another DIR")
    if lang not in ("zh", "en"):
        raise HwkitError(f"--lang {lang!r}: unknown language; use zh or en")
    (root / "assignments").mkdir(parents=True, exist_ok=True)
    for path in sorted((templates_dir() / "assignments").glob("*.toml")):
        shutil.copyfile(path, root / "assignments" / path.name)
    (root / ROSTER_NAME).write_text("student_id,name\n" + "\n".join(SAMPLE_ROSTER) + "\n", encoding="utf-8")
    (root / CONFIG_NAME).write_text(_config_text(name or root.resolve().name, lang,
                                                                  EXAMPLE_SECRET if example else new_secret()), encoding="utf-8")
    (root / ".gitignore").write_text("# hwkit.toml holds the course secret; keep it out of public repositories\n"
                                     "release/\nsource/\ngraded/\nsubmitted/\n*.sqlite*\n", encoding="utf-8")
    return root
