"""Ready-made steps for configs and tests, and the camera demo."""
