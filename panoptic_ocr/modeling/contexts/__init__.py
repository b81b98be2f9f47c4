"""Context modules, one file each, registered in :data:`CONTEXT_REGISTRY` (see registry.py)."""
from .registry import CONTEXT_REGISTRY, FEATURES, REGIONS, TARGETS, ContextModule, build_context, context_class
from .ocr import OCRContext
from .ocr_relation_schemes import OCRACFRelationContext, OCRDoubleAttentionRelationContext, OCRRelationSchemeContext
from .ocr_oracle import GroundTruthOCRContext, ground_truth_regions
from .ppm import PyramidPoolingContext
from .aspp import ASPPContext
from .self_attention import SelfAttentionContext
from .double_attention import DoubleAttentionContext
from .danet import ChannelAttention, DANetContext, PositionAttention
from .cc_attention import CCAttentionContext, CrissCrossAttention
from .coarse_to_fine import CoarseOnlyContext, FineContext, LabelRefinementContext
