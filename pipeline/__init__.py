"""livecoach pipeline."""
