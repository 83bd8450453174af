"""Read: files -> string frames, each row with its source file, record and line.

- `sources`: `resolve_files`, `open_source` (dispatch by `source.format` or the extension;
  CSV and Parquet), `read_file`
- `excel`: Excel sheets through polars' `read_excel` (fastexcel, the `excel` extra)
- `ndjson`: NDJSON / JSON Lines
- `compressed`: .gz / single-file .zip, decompressed streamed with a size bound
- `sourcefile`: `SourceFile` (one open source, any format), `check_header`
- `nulls`: `null_values`, exact or ignoring case
- `textfile`: decoding (declared encodings, BOMs, mixed files stop with the line)
- `csvlayout`: ragged records found with a vectorized pass over the lines

May import: etl.spec, etl.transforms, etl.targets, etl.base.
"""
