"""The consortium coordinator: Flower ServerApp, run settings, reports and the `lang1-fl` CLI."""
