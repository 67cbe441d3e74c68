"""Build through CMakeLists.txt: the pybind11 extension against the CPU runtime (_emu_ext), and
with nvcc (_cuda) when a CUDA compiler is found. Kernel sources ship inside the package
(alexnet_raw/kernels_src), because the CPU runtime and NVRTC compile them at run time.

Environment: ALEXNET_RAW_CUDA=0 skips the nvcc build; ALEXNET_RAW_CUDA_ARCHITECTURES (default
"80;90"); ALEXNET_RAW_SANITIZE=1 builds _emu_ext with AddressSanitizer and UBSan;
CMAKE_BUILD_PARALLEL_LEVEL (default: all cores).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    """One CMake build produces every extension; those not built (no nvcc: _cuda) are dropped."""

    def build_extensions(self):
        build_temp = Path(self.build_temp).resolve() / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        cuda = os.environ.get("ALEXNET_RAW_CUDA", "1") not in ("0", "off", "OFF", "false")
        sanitize = os.environ.get("ALEXNET_RAW_SANITIZE", "0") not in ("0", "off", "OFF", "false", "")
        config = [
            "cmake", "-S", str(ROOT), "-B", str(build_temp),
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DALEXNET_RAW_BUILD_CUDA={'ON' if cuda else 'OFF'}",
            f"-DALEXNET_RAW_SANITIZE={'ON' if sanitize else 'OFF'}",
            f"-DALEXNET_RAW_CUDA_ARCHITECTURES={os.environ.get('ALEXNET_RAW_CUDA_ARCHITECTURES', '80;90')}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        subprocess.run(config, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", str(build_temp), "-j", jobs], check=True)
        built = []
        for ext in self.extensions:
            stem = ext.name.rsplit(".", 1)[-1]
            products = [p for p in build_temp.glob(f"{stem}.*") if p.suffix in (".so", ".pyd")]
            if not products:
                print(f"alexnet_raw: {ext.name} was not built (see the CMake output above)")
                continue
            target = Path(self.get_ext_fullpath(ext.name))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(products[0], target)
            built.append(ext)
        self.extensions[:] = built


class BuildPyWithKernels(build_py):
    """Copy kernels/*.cu, *.cuh and gpu_options.txt into the package as alexnet_raw/kernels_src."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "alexnet_raw" / "kernels_src"
        target.mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / "kernels").iterdir()):
            if src.suffix in (".cu", ".cuh") or src.name == "gpu_options.txt":
                shutil.copy2(src, target / src.name)


setup(
    ext_modules=[Extension("alexnet_raw._emu_ext", sources=[]), Extension("alexnet_raw._cuda", sources=[])],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPyWithKernels},
)
