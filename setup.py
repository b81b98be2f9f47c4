#!/usr/bin/env python
"""Install panoptic_ocr. Detectron2 must be installed first: see README.md (Installation)."""

from setuptools import find_packages, setup

setup(
    name="panoptic_ocr",
    version="0.1.0",
    description="Object-Contextual Representations (OCR) for semantic and panoptic "
    "segmentation, as a Detectron2 project",
    packages=find_packages(include=["panoptic_ocr", "panoptic_ocr.*"]),
    package_data={"panoptic_ocr": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        # Any build of detectron2: the repacked 0.7.2 wheel of tools/setup_env.sh or upstream's.
        "detectron2>=0.6",
        # detectron2 imports these but its 0.7.2 metadata does not declare them.
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        # detectron2 0.7.x uses numpy 1.x APIs; model_zoo imports pkg_resources (gone in 82).
        "numpy>=1.21,<2",
        "setuptools<82",
        "pycocotools>=2.0.2",
        # panopticapi (COCO panoptic PQ) as published on PyPI.
        "panopticapi-lite>=0.2.0",
        "opencv-python-headless>=4.5",
        "Pillow>=8.0",
        # datasets/prepare_{pascal_context,coco_stuff_10k}.py read MATLAB .mat labels.
        "scipy>=1.7,<2",
        "tabulate",
        "tqdm",
    ],
    extras_require={
        # Cityscapes panoptic: createPanopticImgs (datasets/prepare_cityscapes_panoptic.py), the
        # instance AP and the official semantic scores.
        "cityscapes": ["cityscapesscripts>=2.2,<3"],
        # Exported models on CPU: ONNX Runtime, and OpenVINO (IR export, evaluation, the demo's
        # --runtime openvino; tools/benchmark_runtimes.py); nncf: the OpenVINO int8 rows of
        # tools/benchmark_runtimes.py (post-training quantisation).
        "deploy": [
            "onnx>=1.16,<2",
            "onnxruntime>=1.18,<2",
            "onnxscript>=0.5,<1",
            "openvino>=2025.1,<2027",
            "nncf>=2.16,<4",
        ],
        # The local web demo (demo/web_demo.py). pandas < 3: Gradio imports pandas, whose 3.x
        # needs numpy 2 (this project pins numpy 1.x).
        "web": ["gradio>=5,<7", "pandas<3"],
        # onnx + onnxruntime: tests of the ONNX export (tools/export_model.py --check); torch's
        # ONNX exporter imports onnxscript. Versions checked with torch 2.14.1 on Python 3.11.
        # pytest-xdist: make test's two workers; ruff: the lint make test runs first (ruff.toml).
        # cityscapesscripts: as in the [cityscapes] extra; openvino: as in the [deploy] extra;
        # gradio + pandas: as in the [web] extra.
        "test": [
            "pytest>=7",
            "pytest-xdist>=3,<4",
            "pytest-timeout>=2.1,<3",  # pytest.ini's per-test limit: a hang fails with stacks
            "ruff>=0.17,<0.18",
            "onnx>=1.16,<2",
            "onnxruntime>=1.18,<2",
            "onnxscript>=0.5,<1",
            "cityscapesscripts>=2.2,<3",  # the Cityscapes panoptic tests
            "openvino>=2025.1,<2027",  # the OpenVINO export and runtime tests
            "nncf>=2.16,<4",  # the OpenVINO int8 export test (as the [deploy] extra)
            "gradio>=5,<7",  # the web demo tests (as the [web] extra)
            "pandas<3",
            "playwright>=1.40,<2",  # drives the system Chromium in the web demo's browser test
        ],
    },
)
