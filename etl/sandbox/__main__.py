"""`python -m etl.sandbox [options]`: the same as `etl sandbox [options]`."""

from etl.sandbox.cli import sandbox

sandbox(prog_name="python -m etl.sandbox")
