"""load: (docstring follows)."""
