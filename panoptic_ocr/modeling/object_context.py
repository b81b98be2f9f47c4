"""The object-contextual representation of the OCR paper (Yuan, Chen & Wang, ECCV 2020, sec. 3.2).

Shapes use N (batch), C (channels), H x W (feature size) and K (object regions = classes).
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import Activation, conv_norm_relu

__all__ = ["gather_object_regions", "ObjectContextBlock"]


def gather_object_regions(features: Tensor, region_logits: Tensor) -> Tensor:
    """Object region representations f_k of eq. (4).

    Each soft object region (a map of logits) is normalised by a softmax over the pixels, and
    the pixel features are averaged with those weights.

    Args:
        features: pixel representations x, ``[N, C, H, W]``.
        region_logits: soft object regions M, ``[N, K, H, W]``.
    Returns:
        ``[N, C, K, 1]``: one C-dim vector per region, laid out for 1x1 convs.
    """
    weights = region_logits.flatten(2).softmax(dim=2)  # [N, K, HW]
    pixels = features.flatten(2).transpose(1, 2)  # [N, HW, C]
    regions = torch.bmm(weights.to(pixels.dtype), pixels)  # [N, K, C]
    return regions.transpose(1, 2).unsqueeze(3)


class ObjectContextBlock(nn.Module):
    """Pixel-region relations (eq. 5), object contextual representation (eq. 3) and the
    augmented representation (eq. 6).

    ``phi``/``psi`` embed pixels/regions (``proj_layers`` 1x1 conv-norm-ReLU layers each),
    ``delta`` transforms regions, ``rho`` maps the context back to the pixel width and ``g``
    fuses ``[x, y]``. Memory is ``O(H*W*K)``: nothing of size ``(H*W)^2`` is formed.

    With ``learned_relations=False`` the block has no ``phi``/``psi`` (so no parameter is left
    without a gradient) and every call must pass ``relations``: the ablations of the paper's
    Table 1 and the ground-truth oracle OCR* supply them from elsewhere.

    ``activation`` follows every norm (default ReLU; openseg's released models: LeakyReLU(0.01)).
    ``g`` reads ``[x, y]`` (features first); the released models' ``g`` reads ``[y, x]``, which
    :mod:`panoptic_ocr.checkpoint.released` converts by swapping the two input halves of its weight.
    """

    def __init__(
        self,
        in_channels: int,
        key_channels: int,
        out_channels: int,
        *,
        proj_layers: int = 2,
        norm: str = "BN",
        dropout: float = 0.05,
        learned_relations: bool = True,
        activation: Activation = F.relu,
    ):
        super().__init__()
        if proj_layers < 1:
            raise ValueError(f"proj_layers must be >= 1, got {proj_layers}")
        act = {"activation": activation}

        def projection() -> nn.Sequential:
            layers = [conv_norm_relu(in_channels, key_channels, norm, **act)]
            layers += [
                conv_norm_relu(key_channels, key_channels, norm, **act)
                for _ in range(proj_layers - 1)
            ]
            return nn.Sequential(*layers)

        self.key_channels = key_channels
        self.phi = projection() if learned_relations else None
        self.psi = projection() if learned_relations else None
        self.delta = conv_norm_relu(in_channels, key_channels, norm, **act)
        self.rho = conv_norm_relu(key_channels, in_channels, norm, **act)
        self.g = conv_norm_relu(2 * in_channels, out_channels, norm, **act)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def relations(self, features: Tensor, regions: Tensor) -> Tensor:
        """w_ik of eq. (5): ``[N, C, H, W]`` x ``[N, C, K, 1]`` -> ``[N, H*W, K]``."""
        if self.phi is None:
            raise RuntimeError(
                "ObjectContextBlock was built with learned_relations=False: pass `relations`"
            )
        query = self.phi(features).flatten(2).transpose(1, 2)  # [N, HW, key]
        key = self.psi(regions).flatten(2)  # [N, key, K]
        logits = torch.bmm(query, key) * self.key_channels**-0.5
        return logits.softmax(dim=-1)

    def context(self, relations: Tensor, regions: Tensor, size: torch.Size) -> Tensor:
        """y_i of eq. (3): ``rho(sum_k w_ik delta(f_k))``, ``[N, C, H, W]``."""
        value = self.delta(regions).flatten(2).transpose(1, 2)  # [N, K, key]
        context = torch.bmm(relations.to(value.dtype), value)  # [N, HW, key]
        context = context.transpose(1, 2).reshape(value.shape[0], self.key_channels, *size)
        return self.rho(context)

    def forward(
        self, features: Tensor, regions: Tensor, relations: Optional[Tensor] = None
    ) -> Tensor:
        """Augmented representation z of eq. (6), ``[N, out_channels, H, W]``.

        Args:
            features: pixel representations x, ``[N, C, H, W]``.
            regions: region representations f, ``[N, C, K, 1]``.
            relations: optional ``[N, H*W, K]`` that replaces eq. (5) (e.g. ground truth).
        """
        if relations is None:
            relations = self.relations(features, regions)
        context = self.context(relations, regions, features.shape[2:])
        return self.dropout(self.g(torch.cat([features, context], dim=1)))
