from .safe_write import (
    OutputExistsError,
    PendingOutputs,
    atomic_directory,
    atomic_file,
    check_writable,
    save_torch,
    write_json,
)
from .visualization import draw_prediction, save_prediction_overlays
