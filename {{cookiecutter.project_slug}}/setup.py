from setuptools import find_packages, setup

NAME = "{{ cookiecutter.package_name }}"
VERSION = "0.1.0"
REQUIRES = [
    "hmlcore>=0.1",
    "pandas>=2.1",
    "numpy>=1.26",
    "scikit-learn>=1.4",
    # hmlcore publishes scikit-learn models with skops, which loads only trusted types
    "skops>=0.10",
    # xgboost-cpu is the same library without the 469 MB GPU (NCCL) runtime; macOS wheels ship only as xgboost
    "xgboost-cpu>=2.1; sys_platform != 'darwin'",
    "xgboost>=2.1; sys_platform == 'darwin'",
]
EXTRAS = {
    "test": ["pytest>=8", "requests>=2.31", "ruff>=0.6"],
    "gcp": ["hmlcore[gcp]"],
}

setup(
    version=VERSION,
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    packages=find_packages(exclude=["tests", "tests.*"]),
    include_package_data=True,
    package_data={NAME: ["data/*", "data/**/*"]},  # every file under data/, whatever its format, ships in the wheel
    entry_points={"console_scripts": ["{{ cookiecutter.package_name }} = {{ cookiecutter.package_name }}.start:main"]},
)
