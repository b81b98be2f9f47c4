from .backbone import DilatedBasicBlock, build_dilated_resnet_backbone
from .heads import AuxiliaryBranch, ContextHead, OCRContext, OCRHead
from .meta_arch import OCRSemanticSegmentor
from .object_context import ObjectContextBlock, conv_norm_relu, gather_object_regions
from .fuse import fold_batchnorm
from .inference import inference_autocast, prepare_for_inference, resolve_inference_dtype
