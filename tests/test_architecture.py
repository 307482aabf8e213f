"""The house of floors holds: import-linter's contracts pass, and a violation is caught."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path):
    copy = tmp_path / "tree"
    for name in (
        "pyproject.toml",
        "cli",
        "flows",
        "tasks",
        "quality",
        "storage",
        "media",
        "factory",
    ):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy / name)
    with (copy / "factory" / "orders.py").open("a") as module:
        module.write(
            "\n\ndef _sneaky():\n    from storage.open import open_store\n\n    return open_store\n"
        )
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "factory.orders -> storage.open" in result.stdout


def test_no_module_outside_tests_is_over_500_lines():
    sources = [
        path
        for folder in ("cli", "flows", "tasks", "quality", "storage", "media", "factory", "bench")
        for path in (ROOT / folder).rglob("*.py")
    ]
    long = {
        str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}
