"""Context modules, one file each, registered in :data:`CONTEXT_REGISTRY` (see registry.py).

Every module of this package is imported here, so a new file registers its context module (and
its config node) without an edit elsewhere; the names below are the public ones.
"""

import importlib
import pkgutil

from .aspp import ASPPContext
from .cc_attention import CCAttentionContext, CrissCrossAttention
from .coarse_to_fine import CoarseOnlyContext, FineContext, LabelRefinementContext
from .danet import ChannelAttention, DANetContext, PositionAttention
from .double_attention import DoubleAttentionContext
from .ocr import OCRContext
from .ocr_oracle import GroundTruthOCRContext, ground_truth_regions
from .ocr_relation_schemes import (
    OCRACFRelationContext,
    OCRDoubleAttentionRelationContext,
    OCRRelationSchemeContext,
)
from .ppm import PyramidPoolingContext
from .registry import (
    CONTEXT_REGISTRY,
    FEATURES,
    REGIONS,
    TARGETS,
    ContextModule,
    build_context,
    context_class,
    context_config_nodes,
)
from .self_attention import SelfAttentionContext

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
del _module
