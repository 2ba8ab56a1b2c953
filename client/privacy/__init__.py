"""client/privacy."""
