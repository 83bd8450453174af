"""Leaves every layer may use; they import nothing else of etl (only each other).

- `errors`: the one EtlError tree (drawn in its docstring); retryability is in the type
- `exitcodes`: the documented exit codes
- `redact`: secrets never reach an output (`redact`, `redact_frame`, `redacting_output`)
- `safe_write`: atomic writes that never follow a link or write to a device; `report_folder`
- `csvsafe`: spreadsheet-safe CSV (no formula injection)
- `filecheck`: regular files only, magic-byte sniffing, `file_digest`
- `serving`: a socket and uvicorn in the foreground or a thread (webhook receiver, sandbox)

May import: nothing of etl outside this package.
"""
