"""server/launch."""
