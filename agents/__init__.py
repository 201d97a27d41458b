"""livecoach agents."""
