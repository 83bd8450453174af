"""base: (docstring follows)."""
