from setuptools import find_packages, setup

setup(
    name="hallelujah",
    version="0.1.0",
    description="A self-scaling stream-processing database for Unix hosts",
    python_requires=">=3.11",
    packages=find_packages(include=["hallelujah*", "congregation*", "jah*", "sheets*", "bench*",
                                    "tradecrafts*"]),
    package_data={"hallelujah": ["*.capnp", "*.json"], "tradecrafts": ["*.json", "*.parquet"]},
    include_package_data=True,
    install_requires=[
        "trio>=0.25",
        "pycapnp>=2.0",
        "sqlite-utils>=3.36",
        "pyarrow>=16",
        "numba>=0.60",
        "numpy>=1.26",
        "urwid>=2.6",
        "rich>=13",
        "structlog>=24",
        "prometheus-client>=0.20",
        "psutil>=5.9",
        "httpx>=0.27",
        "cryptography>=42",
    ],
    extras_require={"test": ["pytest>=8", "pytest-trio>=0.8", "hypothesis>=6", "duckdb>=1.0"]},
    entry_points={
        "console_scripts": [
            "hallelujah=hallelujah.cli:main",
            "congregation=congregation.daemon:main",
        ]
    },
)
