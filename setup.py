"""Build the optional C kernels (``triage._kernels``): the repeat index's shingling and
segment search, and one petition's feature scores.

Everything else about the package is in ``pyproject.toml``. The extension is optional: where
no C compiler is available the build goes on without it and the same work runs in NumPy
(the same answers, at more CPU per request).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "triage._kernels",
            ["triage/_kernels.c"],
            extra_compile_args=["-O2"],
            libraries=["m"],
            optional=True,
        )
    ]
)
