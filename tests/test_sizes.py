"""Functions with one job: no function in ``fcnx/`` over 80 lines, no class over 200, except the ones
listed below, which are waiting to be split. The list only shrinks: a listed one that grew, or one
that got under its limit and is still listed, fails too.

``python tests/test_sizes.py`` prints every function and class over its limit, largest first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fcnx

ROOT = Path(fcnx.__file__).parent
MAX_FUNCTION = 80
MAX_CLASS = 200
#: "path:qualified name" -> its size in lines now (the most it may have until it is split)
ALLOWED = {
    "engine/cropper.py:Cropper": 436,
    "jobs/crop.py:CropJob": 297,
    "jobs/outdir/outputs.py:CropOutputs": 250,
    "review/app.py:create_app": 119,
    "cli/review.py:review_cmd": 82,
    "jobs/scoring.py:score_items": 81,
}


def sizes(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """Every function and class under ``root``: "path:qualified name" -> (lines, its limit)."""
    found: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                assert child.end_lineno is not None
                limit = MAX_CLASS if isinstance(child, ast.ClassDef) else MAX_FUNCTION
                found[f"{path}:{name}"] = (child.end_lineno - child.lineno + 1, limit)
                visit(child, path, name + ".")
            else:
                visit(child, path, prefix)

    for file in sorted(root.rglob("*.py")):
        visit(ast.parse(file.read_text(encoding="utf-8")), file.relative_to(root).as_posix(), "")
    return found


def over(root: Path = ROOT) -> dict[str, int]:
    """The functions and classes over their limit: "path:qualified name" -> lines."""
    return {name: lines for name, (lines, limit) in sizes(root).items() if lines > limit}


def test_no_new_long_function_or_class():
    new = {name: lines for name, lines in over().items() if name not in ALLOWED}
    assert not new, f"over {MAX_FUNCTION} lines (function) or {MAX_CLASS} (class): {new}; split it into stages"


def test_the_allowed_ones_only_shrink():
    now = over()
    grown = {name: (now[name], most) for name, most in ALLOWED.items() if name in now and now[name] > most}
    assert not grown, f"grew past its allowed size (now, allowed): {grown}"
    done = sorted(set(ALLOWED) - set(now))
    assert not done, f"now within its limit: remove {done} from ALLOWED"


def test_the_measure_sees_nested_functions_and_methods(tmp_path):
    body = "".join(f"    x{k} = {k}\n" for k in range(MAX_FUNCTION))
    (tmp_path / "m.py").write_text(f"class A:\n    def f(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    (tmp_path / "n.py").write_text(f"def g():\n    def h():\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    assert over(tmp_path) == {"m.py:A.f": MAX_FUNCTION + 1, "n.py:g": MAX_FUNCTION + 2, "n.py:g.h": MAX_FUNCTION + 1}


if __name__ == "__main__":
    for name, lines in sorted(over().items(), key=lambda item: -item[1]):
        print(f"{lines:5d}  {name}")
