"""The command line: click skins over the library (the only package, with the sandbox's own
command, that imports click).

Each command parses its options, makes the `Pipeline` once (`etl.spec.pipeline.open_pipeline`),
makes one library call and renders the outcome; an EtlError becomes its documented exit code.

- `app`: the `etl` group (`main`), `validate`, `schema`, `transforms`, `demo`, lazy commands
- `run`: `etl run`; `ledger`: `etl ledger ...`; `reconcile`: `etl reconcile`, `etl webhooks ...`
- `render`: the run's progress bar and final tables; `demo`: the README's main job
- `common`: `fail` (EtlError -> message and exit code), `TOKEN_ENV`

May import: everything, including etl.sandbox (for `--sandbox` and `demo`).
"""
