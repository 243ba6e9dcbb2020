"""A step module whose own import fails, as one with a missing dependency does."""

import no_such_dependency  # noqa: F401
