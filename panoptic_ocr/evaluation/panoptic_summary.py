"""The summary line of a Panoptic-FPN evaluation, in the columns of the OCR supplementary's
Table 3: AP (instance masks), PQ-Th, mIoU (semantic branch), PQ-St, PQ; on Cityscapes panoptic
also the 19-class mIoU of the merged panoptic output ("mIoU-merged")."""

from collections import OrderedDict
from typing import Dict, Mapping, Optional

from tabulate import tabulate

__all__ = [
    "OPTIONAL_SUMMARY_COLUMNS",
    "PANOPTIC_SUMMARY_COLUMNS",
    "panoptic_summary",
    "format_panoptic_summary",
]

# column -> (task reported by Detectron2's evaluators, metric key)
PANOPTIC_SUMMARY_COLUMNS: Dict[str, tuple] = OrderedDict(
    [
        ("AP", ("segm", "AP")),  # COCOEvaluator (pycocotools), mask AP of the instance branch
        ("PQ-Th", ("panoptic_seg", "PQ_th")),  # COCOPanopticEvaluator
        ("mIoU", ("sem_seg", "mIoU")),  # SemSegEvaluator on the semantic branch
        ("PQ-St", ("panoptic_seg", "PQ_st")),
        ("PQ", ("panoptic_seg", "PQ")),
    ]
)
# Columns shown only for results that have their task.
OPTIONAL_SUMMARY_COLUMNS: Dict[str, tuple] = OrderedDict(
    [("mIoU-merged", ("panoptic_sem_seg", "mIoU"))]  # CityscapesPanopticSemSegEvaluator
)


def panoptic_summary(
    results: Mapping[str, Mapping[str, float]],
) -> Optional[Dict[str, Optional[float]]]:
    """Pick the Table 3 columns out of one dataset's merged evaluator results
    (``{"panoptic_seg": {...}, "sem_seg": {...}, "segm": {...}, ...}``). Returns ``None`` when
    there are no panoptic results; a column whose evaluator did not run is ``None``. The
    :data:`OPTIONAL_SUMMARY_COLUMNS` follow, each only where its task is in ``results``."""
    if "panoptic_seg" not in results:
        return None
    summary = OrderedDict(
        (column, results.get(task, {}).get(key))
        for column, (task, key) in PANOPTIC_SUMMARY_COLUMNS.items()
    )
    for column, (task, key) in OPTIONAL_SUMMARY_COLUMNS.items():
        if task in results:
            summary[column] = results[task].get(key)
    return summary


def format_panoptic_summary(
    results_per_dataset: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> Optional[str]:
    """A pipe table with one row per dataset that has panoptic results (``None`` if none has)."""
    summaries = {}
    for dataset_name, results in results_per_dataset.items():
        summary = panoptic_summary(results)
        if summary is not None:
            summaries[dataset_name] = summary
    if not summaries:
        return None
    columns = list(PANOPTIC_SUMMARY_COLUMNS) + [
        c for c in OPTIONAL_SUMMARY_COLUMNS if any(c in s for s in summaries.values())
    ]
    rows = []
    for dataset_name, summary in summaries.items():
        values = [summary.get(c) for c in columns]
        rows.append([dataset_name] + ["-" if v is None else f"{v:.1f}" for v in values])
    return tabulate(
        rows,
        headers=["dataset"] + columns,
        tablefmt="pipe",
        stralign="center",
    )
