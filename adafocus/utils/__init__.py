"""Small helpers every layer may use (no dependency on the rest of adafocus)."""
