"""Why a step's module or class cannot be imported, in one line: where it failed, and an installed package of the
same name that hides the user's own file or folder. Light (the standard library only), for worker processes too."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pipeline.console.humanize import error_text, failure_place, nearest


def import_problem(module_name: str, error: BaseException) -> str:
    """Why importing ``module_name`` raised ``error``, in one line naming the file and line where it failed."""
    return (f"cannot import module {module_name!r}: {type(error).__name__}: {error_text(error)}{failure_place(error)}"
            f"{hidden_folder(module_name, error) or path_for_name(module_name) or near_name(module_name, error)}")


def near_name(module_name: str, error: BaseException) -> str:
    """What a module not found was meant to be: a module of the working directory of a name near it (``MySteps``
    for mysteps.py), as words to add to its import's error; "" if none."""
    if not isinstance(error, ModuleNotFoundError) or error.name != module_name or "." in module_name:
        return ""
    here = [path.stem for path in Path.cwd().glob("*.py")]
    near = nearest(module_name, here)
    return f" (did you mean {near!r}? a module's name is its file's, case and all)" if near else ""


def path_for_name(module_name: str) -> str:
    """What a module given as a file's path (``./mine``, ``mine.py``, ``steps/mine.py``) was meant to be, as words
    to add to its import's error; "" for a name."""
    if not (module_name.startswith(".") or module_name.endswith(".py") or "/" in module_name or "\\" in module_name):
        return ""
    path = Path(module_name.removesuffix(".py").replace("\\", "/"))
    expected = " (expected a module's name, as import takes it, not a file's path: did you mean"
    # Step modules are imported from the working directory: a path below it is a dotted name there; one outside it
    # (absolute, ../) is a name only where it lies. normpath, not resolve(): a link is imported by its own name.
    parts = Path(os.path.relpath(os.path.normpath(Path.cwd() / path))).parts
    if parts[:1] == ("..",):
        return (f"{expected} {path.name!r}? step modules are imported from the directory pipeline-run runs in, "
                f"{Path.cwd()}: run it from {path.parent})")
    return f"{expected} {'.'.join(parts)!r}?)"


def module_file(module_name: str, folder: Path) -> Path:
    """The file in ``folder`` that would hold module ``module_name`` (``a.b``: ``folder/a/b.py``)."""
    return folder / Path(*module_name.split(".")).with_suffix(".py")


def _hides(package: str, where: str, local: str, fix: str) -> str:
    """What a step module's error adds when an installed ``package`` (its file ``where``) hides ``local`` here."""
    return f" (the installed package {package!r}, {where}, hides {local} here: {fix})"


def hidden_file(module_name: str, module: Any) -> str:
    """Why a module has not the class a step names: a file of that name here that an installed package of the same
    name hides (the README's steps saved as pipeline.py); "" otherwise."""
    here = module_file(module_name, Path.cwd())
    if module is None or not here.is_file():
        return ""
    if module_name in sys.builtin_module_names:  # time, gc, itertools: built into Python, no file of their own
        return f" (Python's built-in module {module_name!r} hides the file {here.name} here: rename the file)"
    where = getattr(module, "__file__", None)
    if where is None or Path(where).resolve() == here.resolve():
        return ""
    return _hides(module_name, where, f"the file {here.name}", "rename the file")


def hidden_folder(module_name: str, error: BaseException) -> str:
    """Why a module of a folder here cannot be found: an installed package of the folder's name comes first (the
    FAQ's ctapipe/ folder, where ctapipe is installed); "" otherwise."""
    top = module_name.split(".", 1)[0]
    where = getattr(sys.modules.get(top), "__file__", None)
    if not isinstance(error, ModuleNotFoundError) or "." not in module_name or where is None:
        return ""
    if not (Path.cwd() / top).is_dir() or Path(where).resolve().is_relative_to(Path.cwd().resolve()):
        return ""
    return _hides(top, where, f"the folder {top}/", "name the folder otherwise")
