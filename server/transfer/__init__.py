"""server/transfer."""
