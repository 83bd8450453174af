"""Only a build step pyproject.toml cannot say: the sample pipelines and data (pipelines/,
sample_data/ at the top of the checkout, where the README's commands use them) are copied into
the wheel as etl/samples/pipelines and etl/samples/sample_data, so `etl demo` and
`etl.samples.sample_root()` work from an installed package. Everything else is in pyproject."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SAMPLES = ("pipelines", "sample_data")


class BuildPyWithSamples(build_py):
    def run(self) -> None:
        super().run()
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "etl" / "samples"
        for name in SAMPLES:
            if (here / name).is_dir():  # an sdist without them builds a wheel without them
                shutil.copytree(here / name, target / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(".*", "__pycache__", "reports"))


setup(cmdclass={"build_py": BuildPyWithSamples})
