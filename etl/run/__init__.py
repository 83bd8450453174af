"""run: (docstring follows)."""
