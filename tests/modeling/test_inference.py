"""Sliding-window inference and test-time augmentation (multi-scale, flip, LIP channel swap)."""

import types

import pytest
import torch
from conftest import make_cfg
from detectron2.modeling import build_model

from panoptic_ocr.engine import Trainer
from panoptic_ocr.modeling.sliding_window import window_starts
from panoptic_ocr.modeling.test_time_augmentation import (
    SemanticSegmentorWithTTA,
    flip_channel_permutation,
)

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
SMALL = [
    "MODEL.OCR.MID_CHANNELS",
    "32",
    "MODEL.OCR.KEY_CHANNELS",
    "16",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "32",
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.SEM_SEG_HEAD.NORM",
    "BN",
]


def _model(*opts):
    torch.manual_seed(0)
    return build_model(make_cfg(QUICKSTART, SMALL + list(opts))).eval()


@pytest.mark.parametrize(
    "size,window,stride,expected",
    [
        (100, 40, 30, [0, 30, 60]),
        (100, 40, 20, [0, 20, 40, 60]),
        (40, 40, 30, [0]),
        (41, 40, 40, [0, 1]),
    ],
)
def test_window_starts_cover_the_image(size, window, stride, expected):
    starts = window_starts(size, window, stride)
    assert starts == expected
    covered = set()
    for s in starts:
        covered |= set(range(s, s + window))
    assert covered == set(range(size))


def test_sliding_window_averages_each_pixel_over_its_windows():
    model = _model(
        "TEST.SLIDING_WINDOW.ENABLED",
        "True",
        "TEST.SLIDING_WINDOW.SIZE",
        "(32, 48)",
        "TEST.SLIDING_WINDOW.STRIDE",
        "(20, 30)",
        "TEST.SLIDING_WINDOW.BATCH_SIZE",
        "3",
    )
    calls = []

    def per_pixel(self, x, targets):  # a model whose logits at a pixel depend on that pixel only
        calls.append(tuple(x.shape))
        return torch.stack([x[:, 0], x[:, 1] * 2, -x[:, 2]], dim=1)

    model._segment = types.MethodType(per_pixel, model)
    image = torch.randn(3, 75, 101)
    logits = model.sliding_window_logits(image)
    expected = torch.stack([image[0], image[1] * 2, -image[2]])
    torch.testing.assert_close(logits, expected)
    # rows at 0, 20, 40, 43 and columns at 0, 30, 53: 12 windows in batches of 3.
    assert calls == [(3, 3, 32, 48)] * 4


def test_sliding_window_with_one_window_equals_whole_image_inference():
    image = torch.randint(0, 255, (3, 45, 61)).float()
    whole = _model()([{"image": image}])[0]["sem_seg"]
    windowed = _model(
        "TEST.SLIDING_WINDOW.ENABLED",
        "True",
        "TEST.SLIDING_WINDOW.SIZE",
        "(48, 64)",
        "TEST.SLIDING_WINDOW.STRIDE",
        "(48, 64)",
    )([{"image": image}])[0]["sem_seg"]
    assert windowed.shape == whole.shape == (7, 45, 61)
    torch.testing.assert_close(windowed, whole, rtol=1e-4, atol=1e-5)


def test_sliding_window_rejects_gaps():
    with pytest.raises(ValueError, match="STRIDE"):
        _model(
            "TEST.SLIDING_WINDOW.ENABLED",
            "True",
            "TEST.SLIDING_WINDOW.SIZE",
            "(32, 32)",
            "TEST.SLIDING_WINDOW.STRIDE",
            "(40, 16)",
        )


def test_flip_channel_permutation():
    assert flip_channel_permutation(6, [[1, 4], [2, 3]]).tolist() == [0, 4, 3, 2, 1, 5]
    for bad in ([[1, 1]], [[1, 6]], [[1, 2], [2, 3]], [[1, 2, 3]]):
        with pytest.raises(ValueError, match="FLIP_CHANNEL_PAIRS"):
            flip_channel_permutation(6, bad)


class _LeftArmModel(torch.nn.Module):
    """Predicts class 14 ("left arm" in LIP) everywhere and records the input sizes it saw."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, inputs):
        out = []
        for x in inputs:
            self.sizes.append(tuple(x["image"].shape[-2:]))
            logits = torch.zeros(20, x["height"], x["width"])
            logits[14] = 10.0
            out.append({"sem_seg": logits})
        return out


def test_tta_flip_swaps_left_and_right_parts():
    image = {"image": torch.zeros(3, 40, 60), "height": 40, "width": 60}
    plain = SemanticSegmentorWithTTA(_LeftArmModel(), scales=[1.0], flip=True, num_classes=20)
    probs = plain([image])[0]["sem_seg"]
    assert probs.argmax(0).unique().tolist() == [14]

    lip = SemanticSegmentorWithTTA(
        _LeftArmModel(),
        scales=[1.0],
        flip=True,
        num_classes=20,
        flip_channel_pairs=[[14, 15], [16, 17], [18, 19]],
    )
    probs = lip([image])[0]["sem_seg"]
    # the flipped view says "right arm": half of the probability moves to class 15
    torch.testing.assert_close(probs[14], probs[15])
    torch.testing.assert_close(probs.sum(0), torch.ones(40, 60))


def test_tta_runs_every_scale_and_returns_the_input_resolution():
    inner = _LeftArmModel()
    tta = SemanticSegmentorWithTTA(inner, scales=[0.5, 1.0, 1.5], flip=False, num_classes=20)
    out = tta([{"image": torch.zeros(3, 40, 60), "height": 80, "width": 120}])[0]["sem_seg"]
    assert inner.sizes == [(20, 30), (40, 60), (60, 90)]
    assert out.shape == (20, 80, 120)


def test_trainer_reports_tta_results_under_their_own_name(tmp_path):
    cfg = make_cfg(
        QUICKSTART,
        SMALL
        + [
            "OUTPUT_DIR",
            str(tmp_path),
            "TEST.AUG.ENABLED",
            "True",
            "TEST.AUG.SCALES",
            "(1.0,)",
            "TEST.AUG.FLIP",
            "True",
        ],
    )
    torch.manual_seed(0)
    results = Trainer.test_with_TTA(cfg, build_model(cfg))
    assert set(results) == {"sem_seg_TTA"} and 0 <= results["sem_seg_TTA"]["mIoU"] <= 100
    assert (
        tmp_path / "inference_TTA" / "toy_scenes_sem_seg_val" / "sem_seg_evaluation.pth"
    ).exists()
