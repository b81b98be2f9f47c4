"""The losses of panoptic_ocr.modeling.losses against direct computations written here
(weighted CE as a manual sum, OHEM's kept pixels on hand-made cases, RMI in closed form and
as a plain NumPy re-implementation, Lovasz-softmax as the Choquet integral of the Jaccard
loss), plus finite gradients at odd sizes / any K / all pixels ignored, and config errors."""

import math
from typing import List

import numpy as np
import pytest
import torch
from conftest import make_cfg
from torch.nn import functional as F

from panoptic_ocr.modeling.losses import (
    SEM_SEG_LOSS_REGISTRY,
    CrossEntropyLoss,
    HardPixelMiningLoss,
    LovaszSoftmaxLoss,
    OhemCrossEntropyLoss,
    RMILoss,
    build_sem_seg_loss,
    lovasz_softmax_flat,
    registered_loss_types,
)
from panoptic_ocr.modeling.named_registry import NamedRegistry

pytestmark = pytest.mark.usefixtures("single_thread")
IGN = 255
ALL_LOSSES = (
    "cross_entropy",
    "ohem_cross_entropy",
    "ohem_cross_entropy_openseg",
    "hard_pixel_mining",
    "rmi",
    "lovasz_softmax",
)


def _two_class_logits(p_class0: List[float]) -> torch.Tensor:
    """``[1, 2, 1, P]`` logits whose softmax gives class 0 the probabilities ``p_class0``."""
    p = torch.tensor(p_class0, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()]).float().view(1, 2, 1, -1)


# ----------------------------------------------------------------------------- cross-entropy
def test_cross_entropy_is_bitwise_pytorch_cross_entropy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, 11, generator=g)
    t = torch.randint(0, 5, (2, 7, 11), generator=g)
    t[0, :3] = IGN
    assert torch.equal(
        CrossEntropyLoss(ignore_value=IGN)(x, t), F.cross_entropy(x, t, ignore_index=IGN)
    )


def test_weighted_cross_entropy_is_the_weighted_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (2, 3, 5), generator=g)
    t[1, 0] = IGN
    w = [0.5, 2.0, 1.0, 3.0]
    num = den = 0.0
    for n in range(2):
        for i in range(3):
            for j in range(5):
                y = int(t[n, i, j])
                if y == IGN:
                    continue
                logp = x[n, :, i, j] - torch.logsumexp(x[n, :, i, j], 0)
                num += w[y] * -float(logp[y])
                den += w[y]
    loss = CrossEntropyLoss(ignore_value=IGN, class_weights=w)(x, t)
    assert float(loss) == pytest.approx(num / den, rel=1e-6)


def test_cross_entropy_class_weights_from_config():
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            3,
            "MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS",
            [1.0, 0.0, 0.0],
        ]
    )
    loss = build_sem_seg_loss(cfg, "main")
    x = torch.randn(1, 3, 2, 2)
    t = torch.tensor([[[0, 1], [2, 1]]])
    expected = -F.log_softmax(x, 1)[0, 0, 0, 0]  # only the class-0 pixel counts
    assert float(loss(x, t)) == pytest.approx(float(expected), rel=1e-6)


# ---------------------------------------------------------------------------------- OHEM
def _expected_ohem(p: List[float], kept: List[int], weights=None, labels=None) -> float:
    losses = [(weights[labels[i]] if weights else 1.0) * -math.log(p[i]) for i in kept]
    return sum(losses) / len(losses)


@pytest.mark.parametrize(
    "probs, thresh, min_kept, kept",
    [
        # sorted p: index min(3, 5) = 3 -> 0.6; threshold max(0.6, 0.7) = 0.7; keep p < 0.7.
        ([0.8, 0.1, 0.6, 0.95, 0.2, 0.5], 0.7, 3, [1, 2, 4, 5]),
        # index 5 -> 0.95 > thresh: keep p < 0.95 (5 pixels, the easiest one dropped).
        ([0.8, 0.1, 0.6, 0.95, 0.2, 0.5], 0.7, 5, [0, 1, 2, 4, 5]),
        # more than min_kept below thresh: all of them are kept.
        ([0.8, 0.1, 0.6, 0.95, 0.2, 0.5], 0.9, 1, [0, 1, 2, 4, 5]),
        # ties with the order statistic are dropped (strict <): index 2 -> 0.5, keeps 1 pixel.
        ([0.5, 0.2, 0.5, 0.9, 0.5], 0.3, 2, [1]),
        # fewer candidates than min_kept: index n-1 (largest p) -> that pixel is dropped.
        ([0.3, 0.6, 0.99], 0.5, 100, [0, 1]),
    ],
)
def test_ohem_keeps_the_pixels_of_the_definition(probs, thresh, min_kept, kept):
    x = _two_class_logits(probs)
    t = torch.zeros(1, 1, len(probs), dtype=torch.long)
    for openseg in (False, True):  # pixel 0 valid: both formulations agree
        loss = OhemCrossEntropyLoss(
            ignore_value=IGN, thresh=thresh, min_kept=min_kept, openseg=openseg
        )(x, t)
        assert float(loss) == pytest.approx(_expected_ohem(probs, kept), rel=1e-5)


def test_ohem_class_weights_scale_pixels_but_the_mean_counts_pixels():
    # Labels alternate 0/1; probabilities of the true class as given.
    p_true = [0.1, 0.3, 0.6, 0.95]
    labels = [0, 1, 0, 1]
    p0 = [p if y == 0 else 1 - p for p, y in zip(p_true, labels)]
    x = _two_class_logits(p0)
    t = torch.tensor(labels).view(1, 1, -1)
    w = [2.0, 0.5]
    loss = OhemCrossEntropyLoss(ignore_value=IGN, thresh=0.7, min_kept=1, class_weights=w)(x, t)
    assert float(loss) == pytest.approx(_expected_ohem(p_true, [0, 1, 2], w, labels), rel=1e-5)


def test_ohem_ignores_ignored_pixels_and_openseg_forces_pixel_zero():
    p0 = [0.05, 0.1, 0.6, 0.95, 0.2]
    x = _two_class_logits(p0)
    t = torch.tensor([IGN, 0, 0, 0, IGN]).view(1, 1, -1)
    # HRNet-OCR: candidates are pixels 1, 2, 3 (p 0.1, 0.6, 0.95); min_kept 1 -> index 1 -> 0.6,
    # threshold 0.7 -> keeps pixels 1 and 2.
    hrnet = OhemCrossEntropyLoss(ignore_value=IGN, thresh=0.7, min_kept=1)(x, t)
    assert float(hrnet) == pytest.approx(_expected_ohem(p0, [1, 2]), rel=1e-5)
    # openseg: pixel 0 is a candidate too (class-0 probability 0.05, loss 0): sorted
    # 0.05, 0.1, 0.6, 0.95; index 1 -> 0.1; threshold 0.7 -> keeps pixels 0, 1, 2.
    openseg = OhemCrossEntropyLoss(ignore_value=IGN, thresh=0.7, min_kept=1, openseg=True)(x, t)
    assert float(openseg) == pytest.approx((-math.log(0.1) - math.log(0.6)) / 3, rel=1e-5)


def test_ohem_options_from_config():
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "ohem_cross_entropy",
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_THRESH",
            0.9,
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT",
            131072,
            "MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE",
            "ohem_cross_entropy_openseg",
        ]
    )
    main, aux = build_sem_seg_loss(cfg, "main"), build_sem_seg_loss(cfg, "aux")
    assert (main.thresh, main.min_kept, main.openseg) == (0.9, 131072, False)
    assert (aux.thresh, aux.min_kept, aux.openseg) == (0.9, 131072, True)


# ------------------------------------------------------------------------ hard pixel mining
def test_hard_pixel_mining_is_the_mean_of_the_top_k_losses_over_all_pixels():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 4, 5, generator=g)
    t = torch.randint(0, 3, (1, 4, 5), generator=g)
    t[0, 0] = IGN
    per_pixel = []
    for i in range(4):
        for j in range(5):
            y = int(t[0, i, j])
            per_pixel.append(0.0 if y == IGN else float(-F.log_softmax(x[0, :, i, j], 0)[y]))
    top = sorted(per_pixel, reverse=True)[: int(0.25 * 20)]
    loss = HardPixelMiningLoss(ignore_value=IGN, top_k=0.25)(x, t)
    assert float(loss) == pytest.approx(sum(top) / len(top), rel=1e-5)


# ----------------------------------------------------------------------------------- RMI
def test_rmi_radius_one_closed_form():
    """Radius 1, no pooling: d = 1, M = S_yy - S_yp^2 / (S_pp + a) with S the centred sums.
    Logits +-L on a one-hot label make p affine in y: p = s(-L) + (s(L) - s(-L)) y (+1e-6), so
    S_yp = b S_yy, S_pp = b^2 S_yy; L = 0 makes p constant (independent of y): M = S_yy."""
    a = 1e-3
    t = torch.tensor([[[0, 1, 1], [2, 0, 1]]])  # one image, K = 3
    k = 3
    onehot = F.one_hot(t, k).permute(0, 3, 1, 2).double()
    for big in (0.0, 2.0):
        x = (onehot * 2 - 1) * big
        loss = RMILoss(ignore_value=IGN, radius=1, pool_stride=1, bce_lambda=0.0)(x.float(), t)
        b = 1 / (1 + math.exp(-big)) - 1 / (1 + math.exp(big))
        expected = 0.0
        for c in range(k):
            y = onehot[0, c].flatten().numpy()
            s_yy = float(((y - y.mean()) ** 2).sum())
            m = s_yy - (b * s_yy) ** 2 / (b * b * s_yy + a)
            expected += 0.5 * math.log(m + a)
        assert float(loss) == pytest.approx(expected, abs=1e-4)


def _np_rmi(
    logits: np.ndarray, labels: np.ndarray, radius: int, stride: int, lam: float, a: float = 1e-3
) -> float:
    """Plain NumPy RMI: loops over images and classes, max pooling by explicit windows, the
    log-det by slogdet."""
    n, k, h, w = logits.shape
    valid = labels != IGN
    sig = 1 / (1 + np.exp(-logits))
    onehot = np.zeros_like(logits)
    for c in range(k):
        onehot[:, c] = (labels == c) & valid
    bce = -(onehot * np.log(sig) + (1 - onehot) * np.log(1 - sig))
    bce = float((bce * valid[:, None]).sum()) / (valid.sum() + 1)
    probs = sig * valid[:, None] + 1e-6

    def maxpool(m: np.ndarray) -> np.ndarray:
        pad = stride // 2
        mp = np.full((m.shape[0] + 2 * pad, m.shape[1] + 2 * pad), -np.inf)
        mp[pad : pad + m.shape[0], pad : pad + m.shape[1]] = m
        oh = (m.shape[0] + 2 * pad - stride) // stride + 1
        ow = (m.shape[1] + 2 * pad - stride) // stride + 1
        return np.array(
            [
                [
                    mp[i * stride : i * stride + stride, j * stride : j * stride + stride].max()
                    for j in range(ow)
                ]
                for i in range(oh)
            ]
        )

    rmi = 0.0
    for c in range(k):
        per_image = []
        for i in range(n):
            ly, lp = maxpool(onehot[i, c]), maxpool(probs[i, c])
            ph, pw = ly.shape[0] - radius + 1, ly.shape[1] - radius + 1
            y = np.array(
                [
                    [ly[r + dy, q + dx] for r in range(ph) for q in range(pw)]
                    for dy in range(radius)
                    for dx in range(radius)
                ]
            )
            p = np.array(
                [
                    [lp[r + dy, q + dx] for r in range(ph) for q in range(pw)]
                    for dy in range(radius)
                    for dx in range(radius)
                ]
            )
            y = y - y.mean(1, keepdims=True)
            p = p - p.mean(1, keepdims=True)
            eye = np.eye(radius * radius)
            m = y @ y.T - (y @ p.T) @ np.linalg.inv(p @ p.T + a * eye) @ (y @ p.T).T
            per_image.append(0.5 * np.linalg.slogdet(m + a * eye)[1])
        rmi += np.mean(per_image) / (radius * radius)
    return lam * bce + (1 - lam) * rmi


def test_rmi_matches_a_plain_reimplementation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 9, 11), generator=g)
    t[0, :2, :3] = IGN
    loss = RMILoss(ignore_value=IGN, radius=2, pool_stride=2, pool_type="max", bce_lambda=0.5)(x, t)
    assert float(loss) == pytest.approx(
        _np_rmi(x.numpy(), t.numpy(), 2, 2, 0.5), rel=1e-5, abs=1e-6
    )


def test_rmi_options_from_config_and_errors():
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "rmi",
            "MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_TYPE",
            "avg",
            "MODEL.SEM_SEG_HEAD.LOSS.RMI_RADIUS",
            2,
            "MODEL.SEM_SEG_HEAD.LOSS.RMI_LAMBDA",
            0.25,
        ]
    )
    loss = build_sem_seg_loss(cfg)
    assert (loss.radius, loss.pool_stride, loss.pool_type, loss.bce_lambda) == (2, 3, "avg", 0.25)
    cfg.MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_TYPE = "median"
    with pytest.raises(ValueError, match=r"RMI_POOL_TYPE.*'median'.*max, avg, interpolate"):
        build_sem_seg_loss(cfg)


# -------------------------------------------------------------------------------- Lovasz
def _jaccard_loss(errors_set: set, fg: set) -> float:
    return len(errors_set) / len(fg | errors_set) if errors_set else 0.0


def _lovasz_choquet(m: List[float], fg: set) -> float:
    """Lovasz extension as the Choquet integral: int_0^1 Delta({i : m_i >= t}) dt, summed over
    the distinct levels of m (plain Python, no sorting trick of Algorithm 1)."""
    levels = sorted(set(m) | {0.0}, reverse=True)
    total = 0.0
    for hi, lo in zip(levels[:-1], levels[1:]):
        total += (hi - lo) * _jaccard_loss({i for i, v in enumerate(m) if v >= hi}, fg)
    return total


def _brute_lovasz(probs: torch.Tensor, labels: torch.Tensor, classes: str) -> float:
    per_class = []
    for c in range(probs.shape[1]):
        fg = {i for i, y in enumerate(labels.tolist()) if y == c}
        if classes == "present" and not fg:
            continue
        m = [abs((1.0 if i in fg else 0.0) - float(probs[i, c])) for i in range(probs.shape[0])]
        per_class.append(_lovasz_choquet(m, fg))
    return sum(per_class) / len(per_class)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_flat_is_the_lovasz_extension_of_the_jaccard_loss(classes):
    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(torch.randn(9, 4, generator=g, dtype=torch.float64), 1)
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 1])  # class 3 absent
    assert float(lovasz_softmax_flat(probs, labels, classes)) == pytest.approx(
        _brute_lovasz(probs, labels, classes), rel=1e-9
    )


def test_lovasz_on_hard_predictions_is_one_minus_iou():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    probs = F.one_hot(pred, 3).double()
    ious = []
    for c in range(3):
        inter = int(((labels == c) & (pred == c)).sum())
        union = int(((labels == c) | (pred == c)).sum())
        ious.append(inter / union)
    expected = sum(1 - v for v in ious) / 3
    assert float(lovasz_softmax_flat(probs, labels, "present")) == pytest.approx(
        expected, rel=1e-12
    )


def test_lovasz_module_ignores_pixels_and_per_image_averages_images():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 3, 4), generator=g)
    t[1, 0] = IGN
    probs = torch.softmax(x, 1).permute(0, 2, 3, 1).reshape(2, -1, 3)
    flat_t = t.reshape(2, -1)
    keep = flat_t != IGN
    per_image = [_brute_lovasz(probs[i][keep[i]], flat_t[i][keep[i]], "present") for i in range(2)]
    batch = _brute_lovasz(
        probs.reshape(-1, 3)[keep.reshape(-1)], flat_t.reshape(-1)[keep.reshape(-1)], "present"
    )
    assert float(LovaszSoftmaxLoss(ignore_value=IGN, per_image=True)(x, t)) == pytest.approx(
        sum(per_image) / 2, rel=1e-9
    )
    assert float(LovaszSoftmaxLoss(ignore_value=IGN, per_image=False)(x, t)) == pytest.approx(
        batch, rel=1e-9
    )


# --------------------------------------------------------------- every loss, by config
def _cfg_for(name: str, k: int):
    return make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            k,
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            name,
            "MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE",
            name,
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT",
            10,
        ]
    )


def test_every_loss_is_registered():
    assert set(ALL_LOSSES) == set(registered_loss_types())


def test_loss_registry_is_the_projects_named_registry():
    assert isinstance(SEM_SEG_LOSS_REGISTRY, NamedRegistry)
    assert SEM_SEG_LOSS_REGISTRY.get("cross_entropy") is CrossEntropyLoss
    assert dict(SEM_SEG_LOSS_REGISTRY)["lovasz_softmax"] is LovaszSoftmaxLoss
    with pytest.raises(ValueError, match=r"'rmi' is already registered in the SEM_SEG_LOSS"):
        SEM_SEG_LOSS_REGISTRY.register("rmi")(CrossEntropyLoss)
    assert SEM_SEG_LOSS_REGISTRY.get("rmi") is RMILoss


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_finite_gradients_at_odd_sizes_and_with_everything_ignored(name, k):
    g = torch.Generator().manual_seed(k)
    for branch in ("main", "aux"):
        loss = build_sem_seg_loss(_cfg_for(name, k), branch)
        x = torch.randn(2, k, 7, 11, generator=g, requires_grad=True)
        t = torch.randint(0, k, (2, 7, 11), generator=g)
        t[0, 1:4, 2:9] = IGN
        value = loss(x, t)
        (grad,) = torch.autograd.grad(value, x)
        assert value.dim() == 0 and torch.isfinite(value) and torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
        assert grad[0, :, 1:4, 2:9].abs().max() == 0 or name == "rmi", (
            "ignored pixels got a gradient"
        )
        value = loss(x, torch.full_like(t, IGN))
        (grad,) = torch.autograd.grad(value, x)
        assert float(value.detach()) == 0.0 and torch.isfinite(grad).all() and grad.abs().max() == 0


def test_rmi_gives_ignored_pixels_no_gradient():
    # Pooling mixes neighbours, but probabilities are masked before pooling.
    x = torch.randn(1, 3, 7, 11, requires_grad=True)
    t = torch.randint(0, 3, (1, 7, 11))
    t[0, 1:4, 2:9] = IGN
    (grad,) = torch.autograd.grad(RMILoss(ignore_value=IGN)(x, t), x)
    assert grad[0, :, 1:4, 2:9].abs().max() == 0


@pytest.mark.parametrize("branch, key", [("main", "LOSS_TYPE"), ("aux", "AUX_LOSS_TYPE")])
def test_unknown_loss_type_names_the_key_and_the_allowed_values(branch, key):
    cfg = make_cfg(opts=[f"MODEL.SEM_SEG_HEAD.{key}", "focal"])
    with pytest.raises(ValueError) as err:
        build_sem_seg_loss(cfg, branch)
    message = str(err.value)
    assert f"MODEL.SEM_SEG_HEAD.{key}" in message and "'focal'" in message
    assert all(name in message for name in ALL_LOSSES)


def test_bad_loss_options_name_the_key():
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            3,
            "MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS",
            [1.0, 2.0],
        ]
    )
    with pytest.raises(ValueError, match=r"CLASS_WEIGHTS has 2 values.*NUM_CLASSES = 3"):
        build_sem_seg_loss(cfg)
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "lovasz_softmax",
            "MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_CLASSES",
            "some",
        ]
    )
    with pytest.raises(ValueError, match=r"LOVASZ_CLASSES.*'some'.*present, all"):
        build_sem_seg_loss(cfg)
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "ohem_cross_entropy",
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT",
            0,
        ]
    )
    with pytest.raises(ValueError, match=r"OHEM_MIN_KEPT must be an integer >= 1"):
        build_sem_seg_loss(cfg)
