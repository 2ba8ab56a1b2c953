"""Importers that turn a hospital's own extract (tables, MIMIC-IV, MEDS) into an encounter table."""
