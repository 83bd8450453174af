"""unattended: (docstring follows)."""
