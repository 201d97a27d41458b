"""livecoach web."""
