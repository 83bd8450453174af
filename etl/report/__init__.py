"""report: (docstring follows)."""
