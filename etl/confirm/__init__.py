"""confirm: (docstring follows)."""
