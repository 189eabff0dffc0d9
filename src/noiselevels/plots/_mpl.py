"""matplotlib, imported on first use with the Agg backend (no display needed; ``noiselevels --help`` and
``import noiselevels`` do not pay for it)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
