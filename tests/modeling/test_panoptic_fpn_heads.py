"""OCR, PPM and ASPP as the semantic branch of Detectron2's PanopticFPN (supplementary sec. C)."""

import pytest
import torch
from conftest import make_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

# Detectron2's Panoptic-FPN R50 layout, shrunk for the CPU: small images and sampling sizes.
PANOPTIC_FPN = [
    "MODEL.META_ARCHITECTURE",
    "PanopticFPN",
    "MODEL.WEIGHTS",
    "",
    "MODEL.MASK_ON",
    "True",
    "MODEL.BACKBONE.NAME",
    "build_resnet_fpn_backbone",
    "MODEL.BACKBONE.FREEZE_AT",
    "0",
    "MODEL.RESNETS.DEPTH",
    "50",
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.RESNETS.OUT_FEATURES",
    "['res2', 'res3', 'res4', 'res5']",
    "MODEL.FPN.IN_FEATURES",
    "['res2', 'res3', 'res4', 'res5']",
    "MODEL.ANCHOR_GENERATOR.SIZES",
    "[[32], [64], [128], [256], [512]]",
    "MODEL.RPN.IN_FEATURES",
    "['p2', 'p3', 'p4', 'p5', 'p6']",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "50",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "MODEL.ROI_HEADS.NAME",
    "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES",
    "['p2', 'p3', 'p4', 'p5']",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "3",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.ROI_BOX_HEAD.NAME",
    "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC",
    "2",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "7",
    "MODEL.ROI_MASK_HEAD.NAME",
    "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV",
    "4",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION",
    "14",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES",
    "['p2', 'p3', 'p4', 'p5']",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "5",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.NORM",
    "GN",
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",
    "MODEL.PPM.BRANCH_CHANNELS",
    "32",
    "MODEL.PPM.OUT_CHANNELS",
    "64",
    "MODEL.ASPP.CHANNELS",
    "32",
    "INPUT.MASK_FORMAT",
    "bitmask",
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "INPUT.MIN_SIZE_TEST",
    "96",
    "INPUT.MAX_SIZE_TEST",
    "128",
    "DATASETS.TRAIN",
    "('toy_scenes_panoptic_train_separated',)",
]


@pytest.fixture(scope="module")
def batch():
    cfg = make_cfg(None, PANOPTIC_FPN)
    mapper = DatasetMapper(cfg, is_train=True)
    records = DatasetCatalog.get("toy_scenes_panoptic_train_separated")[:2]
    return [mapper(r) for r in records]


@pytest.mark.parametrize(
    "name,aux",
    [("OCRSemSegFPNHead", True), ("PPMSemSegFPNHead", False), ("ASPPSemSegFPNHead", False)],
)
def test_context_semantic_branch_trains_and_infers_in_panoptic_fpn(batch, name, aux):
    torch.manual_seed(0)
    cfg = make_cfg(None, PANOPTIC_FPN + ["MODEL.SEM_SEG_HEAD.NAME", name])
    model = build_model(cfg)
    head = model.sem_seg_head
    assert type(head).__name__ == name and head.predictor.out_channels == 5
    with EventStorage():
        losses = model(batch)
    assert {"loss_sem_seg", "loss_rpn_cls", "loss_cls", "loss_mask"} <= set(losses)
    assert ("loss_sem_seg_aux" in losses) == aux
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.context.parameters() if p.requires_grad)

    model.eval()
    with torch.no_grad():
        out = model([{"image": x["image"], "height": 60, "width": 70} for x in batch])
    panoptic, segments = out[0]["panoptic_seg"]
    assert panoptic.shape == (60, 70) and out[0]["sem_seg"].shape == (5, 60, 70)
    assert isinstance(segments, list)
