"""Hierarchical multi-scale attention: the combination rule, the model around any context head,
its losses, and its agreement with the single-scale segmentor, the sliding window and flip TTA
(NVIDIA's released model at every stage: tests/checkpoint/test_nvidia_mscale.py)."""

import pytest
import torch
from conftest import TINY_OCR, make_cfg
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY, build_model
from detectron2.utils.events import EventStorage
from torch.nn import functional as F

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.modeling.heads import ContextHead
from panoptic_ocr.modeling.inference import build_inference_model
from panoptic_ocr.modeling.meta_arch import HMSASemanticSegmentor, OCRSemanticSegmentor
from panoptic_ocr.modeling.multi_scale_attention import (
    ScalePrediction,
    check_scales,
    combine_scales,
)
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA

HMSA_OCR = "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml"
SMALL = TINY_OCR + ["MODEL.HMSA.ATTENTION_CHANNELS", "8", "MODEL.PPM.BRANCH_CHANNELS", "8"]


def _up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _prediction(gen, size, k=3):
    return ScalePrediction(
        torch.randn(1, k, *size, generator=gen),
        torch.rand(1, 1, *size, generator=gen),
        torch.randn(1, k, *size, generator=gen),
    )


def test_combination_goes_from_the_largest_scale_down():
    gen = torch.Generator().manual_seed(0)
    p = {
        0.5: _prediction(gen, (4, 6)),
        1.0: _prediction(gen, (8, 12)),
        2.0: _prediction(gen, (16, 24)),
    }
    logits, aux = combine_scales(dict(reversed(list(p.items()))))  # the dict's order is not used

    # two scales, as NVIDIA trains: up(a_0.5 * p_0.5) + (1 - up(a_0.5)) * p_1.0
    two, two_aux = combine_scales({0.5: p[0.5], 1.0: p[1.0]})
    a = p[0.5].attention
    expected_two = (
        _up(a * p[0.5].logits, p[1.0].logits) + (1 - _up(a, p[1.0].logits)) * p[1.0].logits
    )
    torch.testing.assert_close(two, expected_two)
    expected_aux = (
        _up(a * p[0.5].aux_logits, p[1.0].logits) + (1 - _up(a, p[1.0].logits)) * p[1.0].aux_logits
    )
    torch.testing.assert_close(two_aux, expected_aux)

    # three scales: start at 2.0 (its attention unused), 1.0 at its own size, then 0.5 brought up
    a1, a05 = p[1.0].attention, p[0.5].attention
    pred = a1 * p[1.0].logits + (1 - a1) * _up(p[2.0].logits, p[1.0].logits)
    pred = _up(a05 * p[0.5].logits, pred) + (1 - _up(a05, pred)) * pred
    torch.testing.assert_close(logits, pred)
    assert logits.shape == (1, 3, 8, 12) and aux.shape == logits.shape
    changed = dict(p)
    changed[2.0] = ScalePrediction(p[2.0].logits, torch.zeros_like(p[2.0].attention))
    assert torch.equal(combine_scales(changed)[0], logits)  # the largest attention is unused

    only = combine_scales({1.0: p[1.0]})
    assert torch.equal(only[0], p[1.0].logits)


@pytest.mark.parametrize(
    "scales, message",
    [
        ((0.5, 2.0), "must contain 1.0"),
        ((), "scale factors > 0"),
        ((1.0, -1.0), "> 0"),
        ((1.0, 1.0), "twice"),
    ],
)
def test_scales_are_checked(scales, message):
    with pytest.raises(ValueError, match=message):
        check_scales(scales, "MODEL.HMSA.TEST_SCALES")


def test_config_refuses_test_scales_without_one():
    with pytest.raises(ValueError, match=r"MODEL.HMSA.TEST_SCALES is \[0.5, 2.0\].*1.0"):
        setup_cfg(HMSA_OCR, ["MODEL.HMSA.TEST_SCALES", "(0.5, 2.0)"])


def _model(opts=(), config=HMSA_OCR, seed=0):
    cfg = make_cfg(config, SMALL + list(opts))
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    torch.manual_seed(seed)
    return build_model(cfg), cfg


def _batch(n=2, size=(64, 80), classes=7, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.rand(3, *size, generator=gen) * 255,
            "sem_seg": torch.randint(0, classes, size, generator=gen),
        }
        for _ in range(n)
    ]


def _context_heads():
    names = []
    for name, cls in SEM_SEG_HEADS_REGISTRY:
        if isinstance(cls, type) and issubclass(cls, ContextHead) and cls.CONTEXT:
            if cls.CONTEXT != "ocr_gt_oracle":
                names.append(name)
    return names


@pytest.mark.parametrize("head", _context_heads())
def test_every_context_head_trains_and_segments_with_attention(head):
    """The attention reads each head's final representation: training gives the combined
    losses with the per-scale terms, inference the sem_seg contract at the requested size."""
    model, cfg = _model(["MODEL.SEM_SEG_HEAD.NAME", head, "MODEL.HMSA.ATTENTION_CHANNELS", "4"])
    assert isinstance(model, HMSASemanticSegmentor)
    assert model.scale_attention.layers[0].in_channels == model.sem_seg_head.context.out_channels
    with EventStorage():
        losses = model(_batch(n=1, size=(48, 48)))
    assert {"loss_sem_seg", "loss_sem_seg_0.5x", "loss_sem_seg_1x"} <= set(losses)
    sum(losses.values()).backward()
    assert model.scale_attention.layers[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 45, 61) * 255, "height": 30, "width": 40}])
    assert out[0]["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 30, 40)


def test_oracle_head_is_refused():
    with pytest.raises(ValueError, match="reads the labels at inference"):
        _model(["MODEL.SEM_SEG_HEAD.NAME", "OCRGroundTruthHead"])


def test_losses_are_those_of_the_combined_and_per_scale_logits():
    model, _ = _model(["MODEL.HMSA.SUPERVISED_SCALE_WEIGHT", "0.25"])
    batch = _batch()
    images = model._normalised(batch)
    targets = torch.stack([x["sem_seg"] for x in batch])

    def ce(x):
        return F.cross_entropy(x, targets, ignore_index=255)

    # eval mode: dropout off and BN on running statistics, so two passes are the same function
    model.eval()
    with torch.no_grad():
        per_image = model.predict_scales(images, (0.5, 1.0), with_aux=True)
        joint = [combine_scales(p) for p in per_image]
        logits = torch.cat([j[0] for j in joint])
        aux = torch.cat([j[1] for j in joint])
        losses = model._losses(batch)
        low = torch.cat([_up(p[0.5].logits, p[1.0].logits) for p in per_image])
        high = torch.cat([p[1.0].logits for p in per_image])
    torch.testing.assert_close(losses["loss_sem_seg"], ce(logits))
    torch.testing.assert_close(losses["loss_sem_seg_aux"], 0.4 * ce(aux))
    torch.testing.assert_close(losses["loss_sem_seg_0.5x"], 0.25 * ce(low))
    torch.testing.assert_close(losses["loss_sem_seg_1x"], 0.25 * ce(high))
    plain, _ = _model(["MODEL.HMSA.SUPERVISED_SCALE_WEIGHT", "0.0"])
    with EventStorage():
        assert set(plain(batch)) == {"loss_sem_seg", "loss_sem_seg_aux"}


def test_one_scale_is_the_plain_segmentor_whole_and_windowed():
    """With TEST_SCALES (1.0,) the model is the segmentor it wraps, with and without the sliding
    window; with several scales, each scale's windowed logits are the segmentor's windowed
    logits of the rescaled image."""
    hmsa, cfg = _model(["MODEL.HMSA.TEST_SCALES", "(1.0,)"])
    plain, _ = _model(["MODEL.META_ARCHITECTURE", "OCRSemanticSegmentor"])
    assert type(plain) is OCRSemanticSegmentor
    missing = plain.load_state_dict(hmsa.state_dict(), strict=False)
    assert not missing.missing_keys and all(
        k.startswith("scale_attention.") for k in missing.unexpected_keys
    )
    hmsa.eval(), plain.eval()
    window = ((48, 48), (32, 32), 2)
    inputs = [{"image": torch.rand(3, 70, 90) * 255, "height": 70, "width": 90}]
    with torch.no_grad():
        for w in (None, window):
            torch.testing.assert_close(
                hmsa(inputs, sliding_window=w)[0]["sem_seg"],
                plain(inputs, sliding_window=w)[0]["sem_seg"],
            )
        image = hmsa._normalised(inputs)[0]
        for scale in (0.5, 2.0):
            scaled = F.interpolate(
                image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True
            )[0]
            got = hmsa.predict_scale([image], scale, window=window)[0]
            torch.testing.assert_close(
                got.logits[0], plain.sliding_window_logits(scaled, None, window)
            )
            assert got.attention.shape[-2:] == scaled.shape[-2:]
            assert 0 < got.attention.min() and got.attention.max() < 1


def test_flip_tta_averages_the_multi_scale_model():
    model, cfg = _model()
    model.eval()
    tta = SemanticSegmentorWithTTA.from_config(
        make_cfg(HMSA_OCR, ["TEST.AUG.SCALES", "(1.0,)", "TEST.AUG.FLIP", "True"]), model
    )
    image = torch.rand(3, 48, 64) * 255
    with torch.no_grad():
        got = tta([{"image": image}])[0]["sem_seg"]
        plain = model([{"image": image, "height": 48, "width": 64}])[0]["sem_seg"].softmax(0)
        flipped = model([{"image": image.flip(-1), "height": 48, "width": 64}])[0]["sem_seg"]
    torch.testing.assert_close(got, (plain + flipped.flip(-1).softmax(0)) / 2)


def test_attention_maps_of_every_scale_but_the_largest():
    model, _ = _model()
    model.eval()
    maps = model.attention_maps([{"image": torch.rand(3, 40, 60) * 255}])[0]
    assert sorted(maps) == [0.5, 1.0]
    assert maps[0.5].shape == (20, 30) and maps[1.0].shape == (40, 60)


def test_largest_scale_is_bounded_by_the_pixel_guard():
    model, _ = _model(["INPUT.MAX_INPUT_PIXELS", str(100 * 100)])
    model.eval()
    with pytest.raises(ValueError, match=r"scaled by 2 \(MODEL.HMSA.TEST_SCALES\)"):
        model([{"image": torch.rand(3, 64, 64) * 255, "file_name": "big.png"}])


def test_config_check_counts_the_largest_test_scale():
    with pytest.raises(ValueError, match=r"x max\(MODEL.HMSA.TEST_SCALES\) 2 lets a test input"):
        setup_cfg(HMSA_OCR, ["INPUT.MAX_SIZE_TEST", "1333", "INPUT.MAX_INPUT_PIXELS", "3000000"])
    setup_cfg(HMSA_OCR, ["INPUT.MAX_SIZE_TEST", "1333", "INPUT.MAX_INPUT_PIXELS", "8000000"])


def test_inference_builder_folds_and_autocasts_the_attention_too():
    """``build_inference_model`` on HMSA: BN folded into every conv (the attention head's too)
    gives the same logits; bfloat16 autocast runs and returns float32 near them."""
    model, cfg = _model()
    model.eval()
    image = {"image": torch.rand(3, 48, 64) * 255}
    with torch.no_grad():
        reference = model([image])[0]["sem_seg"]
        cfg.TEST.FOLD_BATCHNORM = True
        folded = build_inference_model(cfg, model)
        assert folded is not model and not any(
            isinstance(m, torch.nn.BatchNorm2d) for m in folded.scale_attention.modules()
        )
        torch.testing.assert_close(folded([image])[0]["sem_seg"], reference, atol=1e-4, rtol=1e-4)
        cfg.MODEL.INFERENCE_DTYPE = "bfloat16"
        low = build_inference_model(cfg, model)([image])[0]["sem_seg"]
    assert (
        low.dtype == torch.float32 and (low - reference).abs().max() < 0.1 * reference.abs().max()
    )
