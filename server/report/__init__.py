"""server/report."""
