"""read: (docstring follows)."""
