"""The pipeline spec: YAML -> validated, frozen pydantic objects, and the pipeline loaded once.

- `parse`: `load_spec(path)`, the semantic checks, `json_schema()`; re-exports the model names
- `model`: the pydantic objects (`Spec`, `Source`, `Mapping`, `LoadedSpec`, ...)
- `yamlload`: the safe YAML loader with line numbers (no aliases, no tags)
- `pipeline`: `Pipeline` (spec + ledger path + report folder), `open_pipeline`,
  `default_ledger_path`; made once at the CLI edge and handed down, so no stage reloads the spec

May import: etl.transforms, etl.targets (the names the YAML may use), etl.base.
"""
