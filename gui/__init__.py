"""The PySide6 monitor (pipeline-gui)."""
