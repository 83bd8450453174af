"""spec: (docstring follows)."""
