from .context_head import AuxiliaryBranch, ContextHead
from .ocr_head import OCRContext, OCRHead
from .aspp_head import ASPPContext, ASPPHead
from .cc_attention_head import CCAttentionContext, CCAttentionHead, CrissCrossAttention
from .danet_head import ChannelAttention, DANetContext, DANetHead, PositionAttention
from .double_attention_head import DoubleAttentionContext, DoubleAttentionHead
from .ppm_head import PPMHead, PyramidPoolingContext
from .self_attention_head import SelfAttentionContext, SelfAttentionHead
from .ocr_ablation_heads import (
    OCRACFRelationHead,
    OCRDoubleAttentionRelationHead,
    OCRNoRegionSupervisionHead,
    OCRRelationSchemeContext,
)
from .ocr_oracle_head import GroundTruthOCRContext, OCRGroundTruthHead, ground_truth_regions
from .coarse_to_fine_heads import CoarseOnlyHead, FineOnlyHead, LabelEnsembleHead, LabelRefinementHead
from .panoptic_fpn_heads import ASPPSemSegFPNHead, ContextSemSegFPNHead, OCRSemSegFPNHead, PPMSemSegFPNHead
