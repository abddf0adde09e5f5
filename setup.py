"""Install theanine: the repo root is the package `theanine`."""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """The repo root is the package, so leave this script out of it."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "theanine" and m[1] == "setup")]


# Intel's MKL for mode numba's matrix products (kernels/numba/cblas.py): ~2x OpenBLAS on small
# products (an LSTM step's), which no code of ours matches; wheels for x86-64 only
MKL = "mkl>=2023; platform_machine == 'x86_64' or platform_machine == 'AMD64'"

SUBPACKAGES = [f"theanine.{name}" for name in find_packages(".", exclude=["tests", "tests.*", "examples", "bench", "build"])]

setup(
    name="theanine",
    version="0.1.0",
    description="A Theano-style lazy computation-graph compiler: rewrite, differentiate, fuse, run on numba or CUDA",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"theanine": "."},
    packages=["theanine", *SUBPACKAGES],
    package_data={"theanine.layers": ["data/*", "data/*.gz", "data/NOTICE*"]},
    include_package_data=False,  # with pyproject.toml the default would ship setup.py as data
    install_requires=["numpy>=1.26", "scipy>=1.11", "numba>=0.60", "llvmlite>=0.43", "tqdm>=4.60"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "wheel"],  # wheel: the packaging test builds one
        "cuda": ["pycuda>=2024.1"],
        "mkl": [MKL],
        # PyTensor pins numba <= 0.65.1: it lives in a venv of its own (bench/pytensor_venv.sh)
        "bench": ["jax", "torch==2.13.0", "numexpr", MKL],
        "viz": ["graphviz", "matplotlib"],  # matplotlib: bench charts and learning curves
    },
    license="MIT",
    cmdclass={"build_py": BuildPy},
)
