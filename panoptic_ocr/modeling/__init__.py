from .backbone import DilatedBasicBlock, build_dilated_resnet_backbone
from .contexts import CONTEXT_REGISTRY, ContextModule, OCRContext, build_context
from .fuse import fold_batchnorm
from .heads import ContextHead, OCRHead
from .inference import build_inference_model
from .layers import AuxiliaryBranch, classifier, conv_norm_relu
from .losses import SEM_SEG_LOSS_REGISTRY, build_sem_seg_loss
from .meta_arch import OCRSemanticSegmentor
from .object_context import ObjectContextBlock, gather_object_regions
from .precision import (
    INFERENCE_DTYPES,
    inference_autocast,
    prepare_for_inference,
    resolve_inference_dtype,
)
from .sliding_window import SlidingWindow
from .test_time_augmentation import SemanticSegmentorWithTTA
