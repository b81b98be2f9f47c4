"""The OCR module against the paper's equations, and the ground-truth oracle OCR* (sec. 3.4).

The references below recompute eqs. (4), (5), (3) and (6) with plain tensor ops from the
module's own weights (eval mode: BatchNorm uses its running statistics, dropout is off).
"""

import pytest
import torch
from conftest import randomise_batchnorm
from torch.nn import functional as F

from panoptic_ocr.modeling import ObjectContextBlock
from panoptic_ocr.modeling.contexts import GroundTruthOCRContext, OCRContext, ground_truth_regions

torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _single_thread(single_thread):
    """These tensors are tiny: run on one thread (conftest's ``single_thread``)."""


def _conv_bn_relu(layer, v: torch.Tensor) -> torch.Tensor:
    """A 1x1 Detectron2 conv-BN-ReLU on vectors ``[N, C, P]`` (P positions), written out."""
    w = layer.weight[:, :, 0, 0]
    out = torch.einsum("oc,ncp->nop", w, v)
    if layer.bias is not None:
        out = out + layer.bias[None, :, None]
    bn = layer.norm
    out = (out - bn.running_mean[None, :, None]) / torch.sqrt(
        bn.running_var[None, :, None] + bn.eps
    )
    out = out * bn.weight[None, :, None] + bn.bias[None, :, None]
    return torch.clamp(out, min=0)


def _apply_all(layers, v):
    for layer in layers:
        v = _conv_bn_relu(layer, v)
    return v


def _reference_ocr(
    module: OCRContext, features: torch.Tensor, region_logits: torch.Tensor
) -> torch.Tensor:
    """Paper eqs. (4), (5), (3), (6) for ``[N, C_in, H, W]`` features -> ``[N, C, H, W]``."""
    conv = module.conv_in
    x = F.conv2d(features, conv.weight, conv.bias, padding=1)
    bn = conv.norm
    x = (x - bn.running_mean[None, :, None, None]) / torch.sqrt(
        bn.running_var[None, :, None, None] + bn.eps
    )
    x = torch.clamp(x * bn.weight[None, :, None, None] + bn.bias[None, :, None, None], min=0)
    n, c, h, w = x.shape
    pixels = x.reshape(n, c, h * w)  # x_i, [N, C, HW]
    block = module.object_context

    # Eq. (4): spatial softmax of each soft region M_k, then f_k = sum_i m~_ki x_i.
    m = region_logits.reshape(n, -1, h * w)
    m = torch.exp(m - m.max(dim=2, keepdim=True).values)
    m_tilde = m / m.sum(dim=2, keepdim=True)  # [N, K, HW]
    f = torch.einsum("nki,nci->nck", m_tilde, pixels)  # [N, C, K]

    # Eq. (5): kappa(x_i, f_k) = phi(x_i)^T psi(f_k) (scaled by key_channels^-0.5 as in the
    # authors' code), softmax over the K regions.
    phi = _apply_all(block.phi, pixels)  # [N, key, HW]
    psi = _apply_all(block.psi, f)  # [N, key, K]
    kappa = torch.einsum("nai,nak->nik", phi, psi) / block.key_channels**0.5
    e = torch.exp(kappa - kappa.max(dim=2, keepdim=True).values)
    w_ik = e / e.sum(dim=2, keepdim=True)  # [N, HW, K]

    # Eq. (3): y_i = rho(sum_k w_ik delta(f_k)).
    delta = _conv_bn_relu(block.delta, f)  # [N, key, K]
    y = _conv_bn_relu(block.rho, torch.einsum("nik,nak->nai", w_ik, delta))  # [N, C, HW]

    # Eq. (6): z_i = g([x_i; y_i]).
    z = _conv_bn_relu(block.g, torch.cat([pixels, y], dim=1))
    return z.reshape(n, -1, h, w)


@pytest.mark.parametrize("proj_layers", [1, 2])
@pytest.mark.parametrize("batch", [1, 2])
def test_ocr_matches_equations(proj_layers, batch):
    module = OCRContext(6, mid_channels=10, key_channels=4, proj_layers=proj_layers, norm="BN")
    randomise_batchnorm(module, seed=proj_layers)
    module.eval()
    features = torch.randn(batch, 6, 5, 7)
    region_logits = torch.randn(batch, 3, 5, 7) * 3
    with torch.no_grad():
        out = module(features, region_logits)
        ref = _reference_ocr(module, features, region_logits)
    assert out.shape == (batch, 10, 5, 7)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_ocr_head_wires_aux_logits_as_regions(cfg_factory):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_sem_seg_head

    cfg = cfg_factory(
        opts=[
            "MODEL.SEM_SEG_HEAD.NAME",
            "OCRHead",
            "MODEL.SEM_SEG_HEAD.NORM",
            "BN",
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            3,
            "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
            0,
            "MODEL.OCR.MID_CHANNELS",
            8,
            "MODEL.OCR.KEY_CHANNELS",
            4,
        ]
    )
    shapes = {"res4": ShapeSpec(channels=5, stride=2), "res5": ShapeSpec(channels=6, stride=2)}
    head = build_sem_seg_head(cfg, shapes)
    randomise_batchnorm(head)
    head.eval()
    feats = {"res4": torch.randn(1, 5, 4, 6), "res5": torch.randn(1, 6, 4, 6)}
    with torch.no_grad():
        logits, aux = head.layers(feats)
        # The "linear function" of sec. 3.3: a 1x1 conv predicts the soft regions.
        lin = head.aux_branch.layers[0]
        regions = (
            torch.einsum("kc,nchw->nkhw", lin.weight[:, :, 0, 0], feats["res4"])
            + lin.bias[None, :, None, None]
        )
        z = _reference_ocr(head.context, feats["res5"], regions)
        ref = (
            torch.einsum("kc,nchw->nkhw", head.predictor.weight[:, :, 0, 0], z)
            + head.predictor.bias[None, :, None, None]
        )
    torch.testing.assert_close(aux, regions, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-6)


def test_learned_relations_off_has_no_phi_psi():
    block = ObjectContextBlock(8, 4, 8, norm="BN", learned_relations=False)
    assert block.phi is None and block.psi is None
    x, f = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 2, 1)
    with pytest.raises(RuntimeError, match="relations"):
        block(x, f)
    relations = torch.softmax(torch.randn(1, 9, 2), dim=-1)
    assert block(x, f, relations).shape == (1, 8, 3, 3)
    default = ObjectContextBlock(8, 4, 8, norm="BN")
    assert default.phi is not None and default.psi is not None


# ----------------------------------------------------------------------------------------------
# Ground-truth OCR (ours*)
# ----------------------------------------------------------------------------------------------
def test_ground_truth_regions_nearest_and_ignore():
    labels = torch.tensor(
        [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [255, 255, 2, 2, 9, 9], [255, 255, 2, 2, 9, 9]]
    )
    onehot = ground_truth_regions(labels[None], num_classes=3, size=(2, 3), ignore_value=255)
    assert onehot.shape == (1, 3, 2, 3)
    expected = torch.tensor([[0, 1, 2], [-1, 2, -1]])  # -1: ignore (255) and out-of-range (9)
    for k in range(3):
        assert torch.equal(onehot[0, k], (expected == k).float())
    assert onehot[0, :, 1, 0].sum() == 0 and onehot[0, :, 1, 2].sum() == 0


def test_ground_truth_ocr_definitions():
    """Regions: the mean of the features of each class's pixels; relations: one-hot(l_i)."""
    torch.manual_seed(1)
    num_classes, h, w = 4, 5, 6
    module = GroundTruthOCRContext(
        3, num_classes=num_classes, mid_channels=8, key_channels=4, norm="BN"
    )
    randomise_batchnorm(module, seed=3)
    module.eval()
    features = torch.randn(2, 3, h, w)
    labels = torch.randint(0, 3, (2, h, w))  # class 3 absent everywhere
    labels[0, 0, :3] = 255
    labels[1, 2, 2] = 255
    with torch.no_grad():
        x = module.conv_in(features)
        regions, relations = module.regions_and_relations(x, labels)
        out = module(features, labels)
    assert regions.shape == (2, 8, num_classes, 1) and relations.shape == (2, h * w, num_classes)
    for n in range(2):
        flat = labels[n].flatten()
        for k in range(num_classes):
            mask = flat == k
            expected = x[n].flatten(1)[:, mask].mean(dim=1) if mask.any() else torch.zeros(8)
            torch.testing.assert_close(regions[n, :, k, 0], expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(relations[n, :, k], mask.float())
        assert relations[n][flat == 255].abs().sum() == 0

    # y_i = rho(delta(f_{l_i})) for labelled pixels, rho(0) for ignore pixels; z = g([x; y]).
    block = module.object_context
    with torch.no_grad():
        delta = _conv_bn_relu(block.delta, regions[..., 0])  # [N, key, K]
        for n in range(2):
            flat = labels[n].flatten()
            ctx = torch.zeros(1, 4, h * w)
            valid = flat != 255
            ctx[0][:, valid] = delta[n][:, flat[valid]]
            y = _conv_bn_relu(block.rho, ctx)
            z = _conv_bn_relu(block.g, torch.cat([x[n].flatten(1)[None], y], dim=1))
            torch.testing.assert_close(out[n], z[0].reshape(8, h, w), rtol=1e-5, atol=1e-5)


def test_ground_truth_ocr_downsamples_labels_to_features():
    module = GroundTruthOCRContext(
        3, num_classes=2, mid_channels=4, key_channels=2, norm="BN"
    ).eval()
    labels = torch.zeros(1, 8, 12, dtype=torch.long)
    labels[:, :, 6:] = 1
    with torch.no_grad():
        x = module.conv_in(torch.randn(1, 3, 2, 3))
        regions, relations = module.regions_and_relations(x, labels)
    # Nearest sampling at stride 4: feature columns 0, 1 -> label columns 0, 4 (class 0),
    # column 2 -> 8.
    assert torch.equal(relations[0].argmax(dim=1), torch.tensor([0, 0, 1, 0, 0, 1]))
    torch.testing.assert_close(regions[0, :, 1, 0], x[0, :, :, 2].mean(dim=1))
