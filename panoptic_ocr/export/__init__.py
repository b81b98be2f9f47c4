"""Export of trained models to TorchScript and ONNX (``tools/export_model.py``, docs/export.md)."""

from .exporter import (
    EXPORT_FORMATS,
    ExportCheck,
    MatrixAdaptiveAvgPool2d,
    PanopticTorchScript,
    __all__,  # noqa: F401,E402  (one list of the public names)
    build_export_model,
    check_export,
    check_images,
    export_model,
    format_checks,
    load_exported,
    make_onnx_exportable,
    panoptic_adapter,
    semantic_adapter,
)
