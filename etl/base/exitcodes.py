"""Exit codes: one table for every command (the README documents it), so a scheduler can alert.

0 all good · 1 rows rejected, failed, in doubt, in conflict or needing review · 2 spec or usage
error, or a path that cannot be written · 3 a source file cannot be read · 4 credentials refused
or the wrong organization · 5 interrupted (Ctrl-C / SIGTERM) · 6 another run holds the lock ·
7 refused: CRM+ holds (or may hold) gifts of this source that the ledger does not know.
"""

EXIT_OK = 0
EXIT_ROWS = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_CREDENTIALS = 4
EXIT_INTERRUPTED = 5
EXIT_LOCKED = 6
EXIT_LEDGER_UNKNOWN = 7
