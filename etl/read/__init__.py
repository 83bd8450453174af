"""Read: files -> string frames, each row with its source file, record and line.

- `sources`: `resolve_files`, `open_source` (CSV or Parquet, by content), `read_file`
- `textfile`: decoding (declared encodings, BOMs, mixed files stop with the line)
- `csvlayout`: ragged records found with a vectorized pass over the lines

May import: etl.spec, etl.transforms, etl.targets, etl.base.
"""
