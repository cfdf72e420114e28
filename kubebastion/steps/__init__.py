"""One module per step; each exposes a Nornir task function."""
