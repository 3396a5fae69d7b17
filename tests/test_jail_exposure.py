"""What of hwkit a jailed kernel can import: hwkit_kernel, and nothing else of the grader or the bank, however
hwkit is installed (an editable checkout, or a wheel in the site-packages the jail binds read-only).

The wheel case is played without touching .venv: a fake Python root holding planted `hwkit/`, `solutions/`,
`templates/` packages (and a distribution that ships `solutions` beside another package) is added to the
roots the jail binds, and the student puts it on sys.path and tries to import and read everything."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hwkit.sandbox import visible
from hwkit.sandbox.spec import KERNEL_ROOT, render_argv
from tests import jail_support as harness
from tests.jail_support import LIMITS, SLOT, assert_host_clean, host_secret_in_env, jail_ok  # noqa: F401

GRADER_MODULES = ("hwkit", "hwkit.grade", "hwkit.sandbox", "hwkit.course", "solutions", "templates")

# The modules of hwkit a warm kernel inherits from its zygote (code only, no course data): the fork side.
ZYGOTE_SIDE = {"hwkit", "hwkit.sandbox", "hwkit.sandbox.spec", "hwkit.sandbox.limits", "hwkit.sandbox.linux",
               "hwkit.warm", "hwkit.warm.zygote", "hwkit.warm.view", "hwkit.lazy"}

IMPORTS = r"""
import gc, importlib, json, os, sys, types
result = {}
for name in NAMES:
    try:
        importlib.import_module(name)
        result[name] = 'imported'
    except ModuleNotFoundError:
        result[name] = 'ModuleNotFoundError'
    except Exception as e:
        result[name] = type(e).__name__
import hwkit_kernel, hwkit_kernel.launch, hwkit_kernel.runtime
tops = ('hwkit', 'solutions', 'templates')
result['kernel_pkg'] = os.path.dirname(hwkit_kernel.__file__)
result['kernel_path'] = list(hwkit_kernel.__path__)
result['sys_path'] = sys.path
result['sys_modules'] = sorted(m for m in sys.modules if m.split('.')[0] in tops)
result['reachable'] = sorted({m.__name__ for m in gc.get_objects()
                              if isinstance(m, types.ModuleType) and m.__name__.split('.')[0] in tops})
print(json.dumps(result))
"""


@pytest.mark.sandbox
def test_kernel_imports_hwkit_kernel_and_nothing_else_of_hwkit(tmp_path, jail_ok):
    run = harness.run_notebook(tmp_path, [IMPORTS.replace("NAMES", repr(GRADER_MODULES))])
    assert run.outcomes == ["ok"]
    seen = run.json(0)
    for name in GRADER_MODULES:
        assert seen[name] == "ModuleNotFoundError", name
    assert seen["kernel_pkg"] == f"{KERNEL_ROOT}/hwkit_kernel" and seen["kernel_path"] == [seen["kernel_pkg"]]
    assert KERNEL_ROOT in seen["sys_path"]
    checkout, venv = str(Path(__file__).resolve().parents[1]), str(Path(sys.prefix).resolve())
    outside_venv = [p for p in seen["sys_path"] if not (p == venv or p.startswith(venv + "/"))]
    assert not any(p == checkout or p.startswith(checkout + "/") for p in outside_venv), seen["sys_path"]
    assert "/" not in seen["sys_path"]                                  # the zygote's cwd
    assert seen["sys_modules"] == []
    assert set(seen["reachable"]) <= ZYGOTE_SIDE, seen["reachable"]    # cold: none; warm: the fork side only
    assert_host_clean(SLOT)


def plant_fake_root(root: Path) -> Path:
    """A directory laid out like a site-packages into which a wheel of hwkit and a course bank were installed."""
    files = {
        "hwkit/__init__.py": "PLANTED = 'PLANTED-HWKIT'\n",
        "hwkit/grade.py": "PLANTED = 'PLANTED-GRADER'\n",
        "solutions/__init__.py": "PLANTED = 'PLANTED-SOLUTION-SECRET'\n",
        "solutions/hw1.py": "ANSWER = 'PLANTED-ANSWER-42'\n",
        "templates/conv/problem.py": "PLANTED = 'PLANTED-TEMPLATE'\n",
        "templates.py": "PLANTED = 'PLANTED-SINGLE-FILE'\n",
        "__pycache__/solutions.cpython-311.pyc": "PLANTED-PYC",
        "bankdata/__init__.py": "PLANTED = 'PLANTED-BANK-DATA'\n",      # shipped by the same distribution
        "bankdata/answers.json": '{"PLANTED": "PLANTED-ANSWERS"}',
        "coursebank-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: coursebank\nVersion: 1.0\n",
        "coursebank-1.0.dist-info/top_level.txt": "solutions\nbankdata\n",
        "coursebank-1.0.dist-info/RECORD": "solutions/__init__.py,,\nbankdata/__init__.py,,\n",
        "innocent/__init__.py": "OK = 'innocent'\n",
        "share/bank/solutions/__init__.py": "PLANTED = 'PLANTED-BANK-SOLUTION'\n",   # HWKIT_BANK points here
        "share/bank/templates/conv/problem.py": "PLANTED = 'PLANTED-BANK-TEMPLATE'\n",
        "share/bank/README": "the course bank, not a package",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_grader_and_bank_packages_under_a_bound_root_are_masked(tmp_path, monkeypatch):
    """The mount plan for a root holding planted packages: each is covered, after the root's own bind."""
    root = plant_fake_root(tmp_path / "site")
    monkeypatch.setenv("HWKIT_BANK", str(root / "share" / "bank"))
    hidden = visible.grader_entries(visible.import_dirs([root]))
    names = sorted(p.relative_to(root).as_posix() for p in hidden)
    assert names == ["__pycache__/solutions.cpython-311.pyc", "bankdata", "hwkit", "share/bank/solutions",
                     "share/bank/templates", "solutions", "templates", "templates.py"]
    spec = harness_spec(tmp_path, roots=[root])
    argv = render_argv(spec, seccomp_fd=None)
    assert _mount_index(argv, "--ro-bind", str(root / "share" / "bank" / "solutions")) > 0
    root_bind = _bind_index(argv, "--ro-bind", str(root))
    for path in hidden:
        assert _mount_index(argv, "--ro-bind", str(path)) > root_bind, path
    assert not any(a == str(root / "innocent") for a in argv)


def test_kernel_package_is_bound_alone(tmp_path):
    spec = harness_spec(tmp_path, roots=[])
    argv = render_argv(spec, seccomp_fd=None)
    package = visible.kernel_package_dir()
    at = _bind_index(argv, "--ro-bind", str(package))
    assert argv[at + 2] == f"{KERNEL_ROOT}/hwkit_kernel"
    assert ("PYTHONPATH", KERNEL_ROOT) in spec.env
    assert not any(a == str(package.parent) for a in argv)             # never the checkout or site-packages


def harness_spec(tmp_path: Path, roots: list[Path]):
    from hwkit.sandbox.host import RunPaths
    from hwkit.sandbox.spec import jail_spec

    run = tmp_path / "run"
    paths = RunPaths(run)
    return jail_spec(paths, LIMITS, uid=harness.UID, data_dir=None, cgroup_procs=[], memory_cgroup=True,
                     seccomp=False, kernel_cmd=[sys.executable, "-m", "hwkit_kernel", "-f", str(paths.connection_file)],
                     view=visible.view_of(tuple(roots)))


def _bind_index(argv: list[str], flag: str, src: str) -> int:
    for i in range(len(argv) - 2):
        if argv[i] == flag and argv[i + 1] == src:
            return i
    raise AssertionError(f"no {flag} {src} in the argv")


def _mount_index(argv: list[str], flag: str, dst: str) -> int:
    for i in range(len(argv) - 2):
        if argv[i] == flag and argv[i + 2] == dst:
            return i
    raise AssertionError(f"no {flag} onto {dst} in the argv")


PLANTED = r"""
import importlib, json, os, sys
sys.path[:0] = [FAKE + '/share/bank', FAKE]
result = {}
for name in ('hwkit', 'hwkit.grade', 'solutions', 'solutions.hw1', 'templates', 'bankdata', 'innocent'):
    try:
        importlib.import_module(name)
        result[name] = 'imported'
    except ModuleNotFoundError:
        result[name] = 'ModuleNotFoundError'
    except Exception as e:
        result[name] = type(e).__name__
leaks = []
for dirpath, dirs, files in os.walk(FAKE):
    for f in files:
        try:
            text = open(os.path.join(dirpath, f), 'rb').read().decode('latin-1')
        except OSError:
            continue
        if 'PLANTED' in text:
            leaks.append(os.path.relpath(os.path.join(dirpath, f), FAKE))
result['leaks'] = sorted(leaks)
print(json.dumps(result))
"""


@pytest.mark.sandbox
def test_planted_packages_in_a_bound_root_cannot_be_imported_or_read(tmp_path, jail_ok, monkeypatch):
    fake = plant_fake_root(tmp_path / "fakesite")
    monkeypatch.setenv("HWKIT_BANK", str(fake / "share" / "bank"))
    real_roots = visible.python_roots
    monkeypatch.setattr(visible, "python_roots", lambda: real_roots() + [fake])
    run = harness.run_notebook(tmp_path, [PLANTED.replace("FAKE", repr(str(fake)))])
    assert run.outcomes == ["ok"]
    seen = run.json(0)
    assert seen["innocent"] == "imported"                               # the root itself is there
    for name in ("hwkit", "hwkit.grade", "solutions", "solutions.hw1", "templates", "bankdata"):
        assert seen[name] == "ModuleNotFoundError", name
    assert seen["leaks"] == []
    assert_host_clean(SLOT)

