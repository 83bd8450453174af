"""prepare: (docstring follows)."""
