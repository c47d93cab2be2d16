"""qnn_plugin: quantization-aware bounds for auto_LiRPA and a verifier for quantized networks.

Install with ``scripts/setup.sh`` (see README): auto-lirpa 0.3 and onnx2torch carry stale or
CUDA-pulling dependency pins, so they are installed with ``--no-deps`` there and are
deliberately not listed in install_requires.
"""
from setuptools import find_packages, setup

setup(
    name="qnn_plugin",
    version="0.1.0",
    description="Quantization-aware bound operators for auto_LiRPA and verification of ONNX QNNs",
    packages=find_packages(include=["qnn_plugin", "qnn_plugin.*"]),
    python_requires=">=3.10",
    install_requires=[
        # torch is installed first by scripts/setup.sh (CPU wheel 2.13.0 here, or the CUDA build a
        # GPU machine already has); a satisfied range installs nothing more
        "torch>=2.0",
        "numpy>=1.24",
        "onnx>=1.14",
        "onnxruntime>=1.16",
        "tqdm",
        "appdirs",
        "packaging",
        "pyyaml",
        # VNN-LIB parsing (qnn_plugin.spec works around its documented gaps; pinned for that)
        "vnnlib==1.0.2",
        # the verifier's integer programs, both solved by HiGHS: the exact one through highspy
        # (objective target and cutoff, which scipy.optimize.milp does not expose), the float
        # one through scipy.optimize.milp
        "highspy>=1.15,<2",
        "scipy>=1.9",
        # training data: scikit-learn bundles the 8x8 digits set, the embedded default
        "scikit-learn",
        # PNG plots of the report and comparison scripts
        "matplotlib",
        # the bit-exact SMT baseline (qnn_plugin.baselines.smt): bitwuzla, z3 as the alternative
        "bitwuzla>=0.4",
        "z3-solver>=4.12",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": ["qnn-bound=qnn_plugin.cli:bound_main",
                                     "qnn-verify=qnn_plugin.cli_verify:main",
                                     "qnn-train=qnn_plugin.cli_train:main"]},
)
