"""Is there a screen for Qt, with the platform plugin asked for and the system libraries its X11 plugin needs?
Checked before Qt starts, since Qt would abort the whole process (exit 134) with a misleading line ("xcb-cursor0 is
needed") or several instead.

No Qt application here (only where Qt's plugins lie is asked): ``pipeline-gui`` reports the problem as a one-line
error (exit status 2).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

#: The shared libraries that Qt 6's X11 (xcb) platform plugin loads, each with its Debian/Ubuntu package.
XCB_LIBRARIES = {
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
#: How to run without a screen (the screenshots and the tests do).
OFFSCREEN_HINT = "or run offscreen with QT_QPA_PLATFORM=offscreen"


def loadable(library: str) -> bool:
    """Whether the dynamic loader finds and loads ``library``."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def platform_plugins() -> set[str]:
    """The names of the platform plugins this Qt ships (``xcb``, ``wayland``, ``offscreen``...)."""
    from PySide6.QtCore import QLibraryInfo  # Qt's core only: no application is made

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    return {path.name.split(".")[0].removeprefix("libq") for path in folder.glob("libq*.so")}


def display_problem(env: Mapping[str, str] = os.environ, platform: str = sys.platform,
                    load: Callable[[str], bool] = loadable, plugins: Callable[[], set[str]] = platform_plugins) -> str:
    """One line on what keeps Qt from opening a window here and how to fix it; "" if nothing does.

    On Linux: the plugins QT_QPA_PLATFORM names (Qt tries each of ``a;b`` in turn: one that can start is
    enough) must be among those Qt ships, Wayland needs WAYLAND_DISPLAY, and X11 its display and libraries.
    """
    if not platform.startswith("linux"):
        return ""
    chosen = env.get("QT_QPA_PLATFORM", "")
    if not chosen:
        return "" if env.get("WAYLAND_DISPLAY") else _x11_problem(env, load)
    shipped = plugins()
    problems = [_plugin_problem(name.split(":")[0], chosen, shipped, env, load) for name in chosen.split(";") if name]
    return "" if "" in problems else problems[0] if problems else ""


def _plugin_problem(name: str, chosen: str, shipped: set[str], env: Mapping[str, str],
                    load: Callable[[str], bool]) -> str:
    """What keeps Qt's platform plugin ``name`` from starting here; "" if nothing we know of does."""
    if name not in shipped:
        return (f"QT_QPA_PLATFORM={chosen}: Qt has no platform plugin {name!r} (it has {', '.join(sorted(shipped))}; "
                f"{OFFSCREEN_HINT.removeprefix('or ')})")
    if name.startswith("wayland") and not env.get("WAYLAND_DISPLAY"):
        return (f"no display: QT_QPA_PLATFORM={chosen} but WAYLAND_DISPLAY is not set (start pipeline-gui in a "
                f"Wayland session, {OFFSCREEN_HINT})")
    return _x11_problem(env, load) if name == "xcb" else ""


def _x11_problem(env: Mapping[str, str], load: Callable[[str], bool]) -> str:
    """What keeps Qt's X11 plugin from starting here: no DISPLAY, or missing libraries; "" if nothing."""
    if not env.get("DISPLAY"):
        return f"no display: DISPLAY is not set (start pipeline-gui in a desktop session, {OFFSCREEN_HINT})"
    missing = [package for library, package in XCB_LIBRARIES.items() if not load(library)]
    if missing:
        return (f"Qt's X11 plugin needs libraries that are missing: apt-get install {' '.join(missing)} "
                f"({OFFSCREEN_HINT})")
    return ""
