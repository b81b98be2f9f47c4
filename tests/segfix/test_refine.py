"""SegFix refinement: the gather of labels and scores along given offsets (clamped to the image),
offsets from boundary and direction predictions, and an oracle refinement that repairs a
shifted boundary."""

import numpy as np
import pytest
import torch

from panoptic_ocr.segfix import (
    DIRECTION_VECTORS,
    refine_labels,
    refine_logits,
    refine_with_offsets,
    segfix_offsets,
    segfix_targets,
)

LEFT, RIGHT = 0, 4


def _loop_refine(labels, offsets):
    """Pixel by pixel: label at p + offset, each coordinate clamped."""
    h, w = labels.shape[-2:]
    out = labels.clone()
    for y in range(h):
        for x in range(w):
            sy = min(max(y + int(offsets[0, y, x]), 0), h - 1)
            sx = min(max(x + int(offsets[1, y, x]), 0), w - 1)
            out[..., y, x] = labels[..., sy, sx]
    return out


def _one_hot_directions(bins, n=8):
    """Direction logits ``[N, 8, H, W]`` whose argmax is ``bins`` ``[N, H, W]``."""
    return torch.nn.functional.one_hot(bins.long(), n).permute(0, 3, 1, 2).float()


def test_gather_along_given_offsets_with_clamping():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (7, 9), generator=g)
    offsets = torch.randint(-4, 5, (2, 7, 9), generator=g)  # many sources fall off the image
    refined = refine_with_offsets(labels, offsets)
    assert refined.dtype == labels.dtype and refined.shape == labels.shape
    assert torch.equal(refined, _loop_refine(labels, offsets))
    # zero offsets change nothing; one offset moves one pixel
    assert torch.equal(refine_with_offsets(labels, torch.zeros_like(offsets)), labels)
    one = torch.zeros_like(offsets)
    one[:, 3, 4] = torch.tensor([-2, 1])
    expected = labels.clone()
    expected[3, 4] = labels[1, 5]
    assert torch.equal(refine_with_offsets(labels, one), expected)


def test_clamping_at_each_image_border():
    labels = torch.arange(20).view(4, 5)
    offsets = torch.zeros(2, 4, 5, dtype=torch.long)
    offsets[:, 0, 0] = torch.tensor([-2, -2])  # above-left of the corner: the corner itself
    offsets[:, 3, 2] = torch.tensor([2, 0])  # below the bottom row: same column, bottom row
    offsets[:, 1, 4] = torch.tensor([1, 2])  # right of the right column: one row down
    refined = refine_with_offsets(labels, offsets)
    assert refined[0, 0] == 0 and refined[3, 2] == labels[3, 2] and refined[1, 4] == labels[2, 4]


def test_refine_labels_moves_boundary_pixels_along_the_argmax_direction():
    labels = torch.zeros(1, 6, 10, dtype=torch.long)
    labels[:, :, 5:] = 1
    prob = torch.zeros(1, 6, 10)
    prob[:, :, 3:5] = 0.9  # the two columns left of the edge
    direction = torch.full((1, 6, 10), 2)  # up, except:
    direction[:, :, 3:5] = RIGHT
    refined = refine_labels(labels, prob, _one_hot_directions(direction), scale=2)
    expected = labels.clone()
    expected[:, :, 3:5] = 1  # each took the label 2 pixels to its right
    assert torch.equal(refined, expected)
    # scale 1: only the column next to the edge reaches the other side
    expected1 = labels.clone()
    expected1[:, :, 4] = 1
    assert torch.equal(refine_labels(labels, prob, _one_hot_directions(direction), 1), expected1)


def test_threshold_is_strict_and_configurable():
    labels = torch.tensor([[[0, 0, 0, 1, 1]]])
    direction = _one_hot_directions(torch.full((1, 1, 5), RIGHT))
    prob = torch.tensor([[[0.0, 0.5, 0.51, 0.0, 0.0]]])
    assert refine_labels(labels, prob, direction).tolist() == [[[0, 0, 1, 1, 1]]]
    assert refine_labels(labels, prob, direction, threshold=0.4).tolist() == [[[0, 1, 1, 1, 1]]]
    assert refine_labels(labels, prob, direction, threshold=0.6).tolist() == [[[0, 0, 0, 1, 1]]]


def test_boundary_logits_are_softmaxed():
    g = torch.Generator().manual_seed(1)
    mask_logits = torch.randn(2, 2, 8, 8, generator=g) * 3
    dir_logits = torch.randn(2, 8, 8, 8, generator=g)
    prob = torch.softmax(mask_logits, dim=1)[:, 1]
    assert 0.2 < (prob > 0.5).float().mean() < 0.8
    from_logits = segfix_offsets(mask_logits, dir_logits, scale=3)
    assert torch.equal(from_logits, segfix_offsets(prob, dir_logits, scale=3))
    assert from_logits.shape == (2, 2, 8, 8) and from_logits.dtype == torch.int64
    # the offsets are scale x the argmax's vector on the boundary, 0 elsewhere
    table = torch.tensor(DIRECTION_VECTORS) * 3
    expected = table[dir_logits.argmax(1)].permute(0, 3, 1, 2) * (prob > 0.5).unsqueeze(1)
    assert torch.equal(from_logits, expected)


def test_batched_equals_per_image_and_unbatched():
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 5, (3, 9, 11), generator=g)
    prob = torch.rand(3, 9, 11, generator=g)
    dir_logits = torch.randn(3, 8, 9, 11, generator=g)
    batched = refine_labels(labels, prob, dir_logits)
    for i in range(3):
        single = refine_labels(labels[i], prob[i], dir_logits[i])
        assert single.shape == (9, 11)
        assert torch.equal(batched[i], single)
        assert torch.equal(single, _loop_refine(labels[i], segfix_offsets(prob[i], dir_logits[i])))


def test_refine_logits_gathers_every_class_score():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 6, 7, generator=g)
    offsets = torch.randint(-3, 4, (2, 2, 6, 7), generator=g)
    refined = refine_logits(logits, offsets)
    assert refined.shape == logits.shape and refined.dtype == logits.dtype
    for n in range(2):
        assert torch.equal(refined[n], _loop_refine(logits[n], offsets[n]))
        assert torch.equal(refine_logits(logits[n], offsets[n]), refined[n])
    # its argmax is the refinement of the argmax
    assert torch.equal(refined.argmax(1), refine_with_offsets(logits.argmax(1), offsets))


def test_rejects_bad_shapes_and_float_offsets():
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="integer"):
        refine_with_offsets(labels, torch.zeros(2, 2, 4, 5))
    with pytest.raises(ValueError, match="do not match"):
        refine_with_offsets(labels, torch.zeros(2, 2, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="do not match"):
        refine_with_offsets(labels, torch.zeros(1, 2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="dims"):
        refine_logits(labels[0], torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        segfix_offsets(torch.zeros(2, 4, 5), torch.zeros(2, 4, 4, 5))
    with pytest.raises(ValueError, match="does not match"):
        segfix_offsets(torch.zeros(2, 4, 6), torch.zeros(2, 8, 4, 5))


def test_oracle_targets_repair_a_boundary_shifted_by_two_pixels():
    truth = np.zeros((24, 40), dtype=np.uint8)
    truth[:, 20:] = 1
    boundary, direction, _ = segfix_targets(truth, min_area=0)
    prediction = torch.from_numpy(truth.astype(np.int64))
    prediction[:, 18:20] = 1  # the edge two pixels too far left
    prediction[::2, 20:22] = 0  # and ragged on the other side
    prob = torch.from_numpy((boundary == 1).astype(np.float32))[None]
    bins = torch.from_numpy(np.where(direction == 255, 0, direction).astype(np.int64))[None]
    refined = refine_labels(prediction[None], prob, _one_hot_directions(bins), scale=2)
    assert torch.equal(refined[0], torch.from_numpy(truth.astype(np.int64)))
    # the direction targets of the two sides point away from the edge
    assert (direction[2:-2, 15:20] == LEFT).all() and (direction[2:-2, 20:25] == RIGHT).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu():
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 19, (2, 64, 96), generator=g)
    logits = torch.randn(2, 19, 64, 96, generator=g)
    prob = torch.rand(2, 64, 96, generator=g)
    dir_logits = torch.randn(2, 8, 64, 96, generator=g)
    cpu = refine_labels(labels, prob, dir_logits)
    gpu = refine_labels(labels.cuda(), prob.cuda(), dir_logits.cuda())
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    offsets = segfix_offsets(prob, dir_logits)
    gpu_logits = refine_logits(logits.cuda(), segfix_offsets(prob.cuda(), dir_logits.cuda()))
    assert torch.equal(gpu_logits.cpu(), refine_logits(logits, offsets))
