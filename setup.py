"""Packaging for brats_plugin (pyproject.toml only names the build system)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "brats_plugin" / "version.py").read_text()).group(1)

setup(
    name="brats_plugin",
    version=VERSION,
    description="BraTS brain-tumour segmentation on nnU-Net v2: dataset conversion, generalised Dice "
                "trainers, inference and exports",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["brats_plugin", "brats_plugin.*"]),
    package_data={"brats_plugin.export": ["viewer_assets/*"], "brats_plugin.app": ["static/*"]},
    install_requires=[
        "nnunetv2>=2.8,<2.9",
        "dynamic-network-architectures",  # nnU-Net's U-Net classes (the lean inference forward reads them)
        "torch",
        "SimpleITK",
        "nibabel>=5",
        "numpy",
        "scipy",
        "batchgenerators",
        "tqdm",
        "isal",
        "pydicom>=3",  # MR image series (exports)
        "highdicom>=0.28",  # DICOM SEG (exports)
        "pynetdicom>=2",  # C-STORE to a PACS (brats send)
        "Pillow",  # PNG/GIF montages
        "connected-components-3d",  # lesion-wise evaluation
        "starlette>=0.37",  # the web app (brats app)
        "uvicorn>=0.29",
        "python-multipart",  # the app's uploads
        "nilearn",  # ships the MNI152 template that brats preprocess registers to (read as a file, no download)
        "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pyjpegls",  # compressed DICOM (JPEG, J2K, JPEG-LS)
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "hypothesis", "monai", "panoptica", "selenium", "httpx", "ruff"],
        # ANTsPy, the anchor of benchmarks/registration_libraries.py; the CPU runtimes of benchmarks/predict.py
        "benchmarks": ["antspyx", "onnx", "onnxruntime", "openvino"],
    },
    entry_points={"console_scripts": ["brats=brats_plugin.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
