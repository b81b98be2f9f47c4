"""Export of trained models to TorchScript, ONNX and OpenVINO IR (``tools/export_model.py``), and
the runtimes that run exported files (docs/export.md)."""

from .exporter import (
    EXPORT_FORMATS,
    ExportCheck,
    MatrixAdaptiveAvgPool2d,
    build_export_model,
    check_export,
    check_images,
    export_model,
    format_checks,
    make_onnx_exportable,
    openvino_weights_path,
    panoptic_adapter,
    semantic_adapter,
)
from .exporter import (
    __all__ as _exporter_all,
)
from .runtimes import (
    METADATA_KEY,
    RUNTIMES,
    ExportedFileError,
    ExportedSemanticSegmentor,
    PanopticTorchScript,
    check_exported_matches_config,
    default_runtime,
    load_exported,
    read_metadata,
)
from .runtimes import __all__ as _runtimes_all

__all__ = _exporter_all + _runtimes_all
