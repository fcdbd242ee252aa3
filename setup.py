"""Installs the one-line startup file ``hf_muon-autoregister.pth`` beside the packages (wheel and editable
installs), so ``--optim muon`` works in unmodified scripts; everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "hf_muon-autoregister.pth"


class BuildPyWithStartupFile(build_py):
    def run(self):
        super().run()
        # a wheel: into build_lib (copied to site-packages); an editable install: straight into the wheel root
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.copy_file(str(Path(__file__).parent / PTH), str(Path(root) / PTH))

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildPyWithStartupFile})
