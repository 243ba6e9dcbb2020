"""Why a step's module or class cannot be imported, in one line: where it failed, an installed package of the
same name that hides the user's own file or folder, and a file that is there but not on ``sys.path``. Light (the
standard library only), for worker processes too.

Step modules are imported from ``sys.path``. ``pipeline-run`` puts its working directory there, as ``python -m``
does; a script run as ``python scripts/run.py`` has ``scripts/`` there instead, and ``Pipeline.from_config()`` adds
nothing: so the words on where modules come from depend on ``sys.path``, not on the entry point.

Whether a file is there is asked of ``os.path``, not of pathlib: a module's name too long for a file's (a config's
typo of 300 characters) is no file there, where pathlib's ``is_file()`` raises (a traceback, exit status 1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pipeline.console.humanize import error_text, failure_place, nearest, quoted


def import_problem(module_name: str, error: BaseException) -> str:
    """Why importing ``module_name`` raised ``error``, in one line naming the file and line where it failed."""
    why = (hidden_folder(module_name, error) or off_path(module_name, error) or path_for_name(module_name)
           or near_name(module_name, error))
    failure = f"{type(error).__name__}: {error_text(error)}{failure_place(error)}"
    return f"cannot import module {quoted(module_name)}: {failure}{why}"


def on_path(folder: Path) -> bool:
    """Whether modules in ``folder`` are found by name: it is on ``sys.path`` ("" there is the working directory)."""
    return any(Path(entry or os.curdir).resolve() == folder.resolve() for entry in sys.path)


def not_imported_from(folder: Path) -> str:
    """How to import the modules of ``folder``, where a module was found that its name did not reach, as words that
    are true whatever put which directory on sys.path (pipeline-run, python -m, a script, a notebook)."""
    if _working_directory_imported():
        return (f"step modules are imported from the working directory, {Path.cwd()}, and sys.path: run from "
                f"{folder}, or add {folder} to PYTHONPATH")
    return f"{folder} is not on sys.path, where step modules are imported from: add it to PYTHONPATH or sys.path"


def off_path(module_name: str, error: BaseException) -> str:
    """Why a module whose file or folder is in the working directory was not found: that directory is not on sys.path
    (a script run from elsewhere: ``python scripts/run.py`` puts scripts/ there), as words to add to its import's
    error; "" otherwise."""
    top = module_name.split(".", 1)[0]
    if not isinstance(error, ModuleNotFoundError) or error.name != top or on_path(Path.cwd()):
        return ""
    here = module_file(top, Path.cwd())
    if not os.path.isfile(here) and not os.path.isdir(here.with_suffix("")):
        return ""
    script = _script_module()
    run = f"run the script as python -m {script}, or " if script else ""
    return (f" ({here.name if here.is_file() else top + '/'} is in the working directory, {Path.cwd()}, which is not "
            f"on sys.path: {run}add the directory to PYTHONPATH or sys.path)")


def _working_directory_imported() -> bool:
    """Whether sys.path holds the working directory as such ("" or its path: pipeline-run, python -m, a notebook), so
    that running from another directory would import from that one; not if it is there only as the folder of the
    script Python runs (``python run.py``), which stays on sys.path wherever it runs from."""
    here = Path.cwd().resolve()
    entries = [Path(entry or os.curdir).resolve() for entry in sys.path].count(here)
    script = _script()
    return entries - (script is not None and script.parent == here) > 0


def _script() -> Path | None:
    """The Python file this Python runs as its script (``python scripts/run.py``, or ``python -m scripts.run``), or
    None (pipeline-run, whose console script is no .py file; ``python -c``; a notebook)."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else None
    return script.resolve() if script is not None and script.is_file() else None


def _script_module() -> str | None:
    """The module name by which ``python -m`` runs the script this Python runs (``scripts.run`` for scripts/run.py
    below the working directory, which it then puts on sys.path); None if no such script."""
    script, here = _script(), Path.cwd().resolve()
    if script is None or not script.is_relative_to(here):
        return None
    return ".".join(script.relative_to(here).with_suffix("").parts)


def near_name(module_name: str, error: BaseException) -> str:
    """What a module not found was meant to be: a module of the working directory of a name near it (``MySteps``
    for mysteps.py), as words to add to its import's error; "" if none."""
    if not isinstance(error, ModuleNotFoundError) or error.name != module_name or "." in module_name:
        return ""
    # Its own name is no suggestion: that file is there, but not on sys.path (off_path says so)
    here = [path.stem for path in Path.cwd().glob("*.py") if path.stem != module_name]
    near = nearest(module_name, here)
    return f" (did you mean {quoted(near)}? a module's name is its file's, case and all)" if near else ""


def path_for_name(module_name: str) -> str:
    """What a module given as a file's path (``./mine``, ``mine.py``, ``steps/mine.py``) was meant to be, as words
    to add to its import's error; "" for a name."""
    as_path = module_name.endswith(".py") or "/" in module_name or "\\" in module_name
    if not (module_name.startswith(".") or as_path):
        return ""
    if not as_path and module_name.lstrip("."):
        # ".basic": a relative import, which has no package to be relative to here (it suggested itself)
        return (" (expected an absolute module name, as import takes it: a relative one has no package to be relative "
                f"to; name its package too, such as 'package{module_name}')")
    path = Path(module_name.removesuffix(".py").replace("\\", "/"))
    expected = " (expected a module's name, as import takes it, not a file's path: did you mean"
    # Step modules are imported from the working directory: a path below it is a dotted name there; one outside it
    # (absolute, ../) is a name only where it lies. normpath, not resolve(): a link is imported by its own name.
    parts = Path(os.path.relpath(os.path.normpath(Path.cwd() / path))).parts
    if parts[:1] == ("..",):
        return f"{expected} {quoted(path.name)}? {not_imported_from(path.parent)})"
    return f"{expected} {quoted('.'.join(parts))}?)"


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
    if module is None or not os.path.isfile(here):
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
    if not os.path.isdir(Path.cwd() / top) or Path(where).resolve().is_relative_to(Path.cwd().resolve()):
        return ""
    return _hides(top, where, f"the folder {top}/", "name the folder otherwise")
