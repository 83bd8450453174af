"""`Pipeline`: this pipeline, loaded. Made once at the CLI edge (`open_pipeline`) and handed down,
so no stage reads the spec again: the validated spec, its file and hash, the ledger file (the
sandbox's or the real one) and where reports go."""

from __future__ import annotations

import hashlib
from pathlib import Path

from etl.base.safe_write import report_folder
from etl.spec.model import LoadedSpec
from etl.spec.parse import load_spec


class Pipeline(LoadedSpec):
    """A loaded spec plus the paths a command resolved for it (a `LoadedSpec` everywhere)."""

    ledger_path: Path
    sandbox: bool = False
    out_dir: Path | None = None  # --out; None: the spec's output.dir, else reports/<name>

    def report_dir(self) -> Path:
        """The report folder, ready to write into: --out, else the spec's output.dir (relative
        to the spec), else reports/<name>. Only --out may name an existing folder the tool did
        not create (etl/base/safe_write.py: a spec must not be able to write into /etc);
        UnsafeOutput else."""
        if self.out_dir is not None:
            return report_folder(self.out_dir, explicit=True, origin="--out")
        if self.spec.output.dir:
            return report_folder(self.base_dir / self.spec.output.dir, explicit=False,
                                 origin=f"{self.path}: output.dir")
        return report_folder(Path("reports") / self.spec.name, explicit=False,
                             origin="the default report folder")

    def spec_changed(self) -> bool:
        """True when the spec file no longer holds the bytes that were loaded (or is gone)."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest() != self.sha256
        except OSError:
            return True


def default_ledger_path(loaded: LoadedSpec, *, sandbox: bool = False) -> Path:
    """`load.ledger` (relative to the spec), else `<spec folder>/.ledger/<name>.sqlite`;
    a sandbox run gets `.sandbox` before the suffix so rehearsals never mix with real runs."""
    configured = loaded.spec.load.ledger
    path = (loaded.base_dir / configured) if configured else (
        loaded.base_dir / ".ledger" / f"{loaded.spec.name}.sqlite")
    return path.with_name(f"{path.stem}.sandbox{path.suffix}") if sandbox else path


def open_pipeline(spec_path: str | Path, *, ledger_path: Path | None = None,
                  sandbox: bool = False, out_dir: Path | None = None) -> Pipeline:
    """Load and validate the spec once, and resolve its ledger (--ledger, else the default)."""
    loaded = load_spec(spec_path)
    return Pipeline(spec=loaded.spec, path=loaded.path, sha256=loaded.sha256,
                    ledger_path=ledger_path or default_ledger_path(loaded, sandbox=sandbox),
                    sandbox=sandbox, out_dir=out_dir)
