"""What every node of the pack shares: its category and socket types."""

from __future__ import annotations

CATEGORY = "DWGF"
DEGRADATION_TYPE = "DWGF_DEGRADATION"
