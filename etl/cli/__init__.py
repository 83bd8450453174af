"""cli: (docstring follows)."""
