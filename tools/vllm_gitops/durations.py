"""Go durations ("45m", "1h30m", "720h"), as Flux, Karpenter and Argo CD write them."""

from __future__ import annotations

import math
import re

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def duration_hours(text: str) -> float | None:
    """Hours in a Go duration such as '8h', '1h30m', '720h'; None when not one."""
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    scale = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def go_duration(seconds: float) -> str:
    """Seconds rounded up to whole minutes, as a Go duration: 45m, 1h, 2h15m."""
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")
