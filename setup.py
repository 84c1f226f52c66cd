"""Only the compiled part of the build; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# optional: without a C compiler the install still succeeds, and soxs_es falls back to its Python readers
setup(ext_modules=[Extension("soxs_es._speedups", ["soxs_es/_speedups.c"], optional=True,
                             extra_compile_args=["-O2"])])
