"""Is there a screen for Qt, with the system libraries its X11 plugin needs? Checked before Qt starts,
since Qt would abort the whole process with a misleading line ("xcb-cursor0 is needed") instead.

No Qt here: ``pipeline-gui`` reports the problem as a one-line error (exit status 2).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

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


def display_problem(env: Mapping[str, str] = os.environ, platform: str = sys.platform,
                    load: Callable[[str], bool] = loadable) -> str:
    """One line on what keeps Qt from opening a window here and how to fix it; "" if nothing does.

    Only the X11 plugin on Linux is checked: another platform chosen with QT_QPA_PLATFORM, or a
    Wayland session, is Qt's to report.
    """
    if not platform.startswith("linux"):
        return ""
    chosen = env.get("QT_QPA_PLATFORM", "")
    if (chosen and not chosen.startswith("xcb")) or (not chosen and env.get("WAYLAND_DISPLAY")):
        return ""
    if not env.get("DISPLAY"):
        return f"no display: DISPLAY is not set (start pipeline-gui in a desktop session, {OFFSCREEN_HINT})"
    missing = [package for library, package in XCB_LIBRARIES.items() if not load(library)]
    if missing:
        return (f"Qt's X11 plugin needs libraries that are missing: apt-get install {' '.join(missing)} "
                f"({OFFSCREEN_HINT})")
    return ""
