"""The OCR module (paper sec. 3.3, Figure 3) as a context module: it consumes the soft object
regions predicted (and supervised) by the head's auxiliary branch."""

from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import Activation, conv_norm_relu, head_activation
from ..object_context import ObjectContextBlock, gather_object_regions
from .registry import CONTEXT_REGISTRY, REGIONS, ContextModule

__all__ = ["OCRContext"]


@CONTEXT_REGISTRY.register("ocr")
class OCRContext(ContextModule, nn.Module):
    """The OCR module: 3x3 conv to ``mid_channels`` (x), object region representations
    (eq. 4), pixel-region relations (eq. 5), object contextual representation (eq. 3) and the
    augmented representation (eq. 6).

    Shapes: features ``[N, C_in, h, w]``, region logits ``[N, K, h, w]`` ->
    ``[N, mid_channels, h, w]``. ``activation`` follows every norm (default ReLU).
    """

    consumes = REGIONS
    # OCR module (paper sections 3.2-3.3). Channel numbers default to the paper's. Also read by
    # the OCR variants (relation schemes, oracle) and the coarse-to-fine baselines.
    CONFIG_NODE = "OCR"
    CONFIG_DEFAULTS = {
        # Channels of the pixel representation x (after a 3x3 conv) and of g's output
        # (paper: 512).
        "MID_CHANNELS": 512,
        # Channels of phi, psi and delta (paper: 256); relations are scaled by
        # KEY_CHANNELS**-0.5.
        "KEY_CHANNELS": 256,
        # Number of 1x1 conv-BN-ReLU layers in phi and in psi: 1 as in the paper's text and its
        # Table 4 count, 2 (default) as in the authors' released code.
        "PROJ_LAYERS": 2,
        # Dropout2d rate after g (authors' code: 0.05).
        "DROPOUT": 0.05,
    }
    CONFIG_KEYS = {
        "mid_channels": "MID_CHANNELS",
        "key_channels": "KEY_CHANNELS",
        "proj_layers": "PROJ_LAYERS",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        proj_layers: int = 2,
        norm: str = "BN",
        dropout: float = 0.05,
        activation: Activation = F.relu,
    ):
        super().__init__()
        self.out_channels = mid_channels
        self.conv_in = conv_norm_relu(
            in_channels, mid_channels, norm, kernel_size=3, activation=activation
        )
        self.object_context = ObjectContextBlock(
            mid_channels,
            key_channels,
            mid_channels,
            proj_layers=proj_layers,
            norm=norm,
            dropout=dropout,
            activation=activation,
        )

    @classmethod
    def from_config(cls, cfg, in_channels: int, norm: str) -> "OCRContext":
        """``MODEL.OCR``; the activation from
        ``MODEL.SEM_SEG_HEAD.ACTIVATION``/``LEAKY_RELU_SLOPE``."""
        head = cfg.MODEL.SEM_SEG_HEAD
        activation = head_activation(head.ACTIVATION, head.LEAKY_RELU_SLOPE)
        return cls(in_channels, norm=norm, activation=activation, **cls.config_kwargs(cfg))

    def forward(self, features: Tensor, region_logits: Tensor) -> Tensor:
        x = self.conv_in(features)
        regions = gather_object_regions(x, region_logits)
        return self.object_context(x, regions)
