"""Prepare: frames -> mapped, validated rows and their wire JSON payloads.

- `mapping`: spec mappings -> polars expressions (through etl.transforms), `key_expr`
- `validate`: pandera checks of the declared rules, duplicates; `rules`: cross-field rules
- `payload`: the payload JSON as polars expressions (no Python per row)
- `result`: `ValidationResult`, `FileInfo`, `ReportPaths`
- `lookups`: repeated values transformed once per file; `kept`: what a file keeps of its batches
- `runner`: `validate_pipeline(loaded)`, the only place read + prepare are wired

May import: etl.read, etl.spec, etl.transforms, etl.targets, etl.base.
"""
