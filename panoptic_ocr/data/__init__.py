from . import datasets  # registers the datasets
from .augmentations import RandomBrightnessShift, RandomScale, build_semantic_train_augmentations
from .availability import ensure_dataset_available, register_dataset_generator
from .dataset_mappers import SemanticDatasetMapper
