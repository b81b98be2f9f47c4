# panoptic_instances_dataset_mapper is imported from its module, not here: it reads panoptic
# PNGs through the dataset modules, which themselves (through panoptic_ocr.utils) import this
# package.
from .segfix_dataset_mapper import SegFixDatasetMapper
from .semantic_dataset_mapper import SemanticDatasetMapper, read_semantic_label
