"""The installed detectron2 is real and has what the project relies on."""

import importlib

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances


@pytest.mark.parametrize(
    "module",
    [
        "detectron2.layers",
        "detectron2.modeling",
        "detectron2.evaluation",
        "detectron2.engine",
        "detectron2.projects.deeplab",
    ],
)
def test_detectron2_module_imports(module):
    importlib.import_module(module)


def test_detectron2_is_not_faked():
    # The project never ships a stand-in _C: with one, COCO evaluation takes the C++ path.
    with pytest.raises(ImportError):
        importlib.import_module("detectron2._C")
    from detectron2.modeling import PanopticFPN, SemanticSegmentor  # noqa: F401


def test_coco_evaluator_pycocotools_mode_scores_ground_truth_as_perfect(tmp_path):
    from detectron2.evaluation import COCOEvaluator

    name = "toy_scenes_panoptic_val_separated"
    records = DatasetCatalog.get(name)[:5]
    meta = MetadataCatalog.get(name)
    evaluator = COCOEvaluator(
        name, tasks=("segm",), distributed=False, output_dir=str(tmp_path), use_fast_impl=False
    )
    assert evaluator._use_fast_impl is False
    evaluator.reset()
    for record in records:
        h, w = record["height"], record["width"]
        annos = record["annotations"]
        masks = np.stack([mask_util.decode(a["segmentation"]) for a in annos]).astype(bool)
        inst = Instances((h, w))
        inst.pred_masks = torch.from_numpy(masks)
        inst.pred_boxes = Boxes(
            torch.tensor(
                [
                    [
                        a["bbox"][0],
                        a["bbox"][1],
                        a["bbox"][0] + a["bbox"][2],
                        a["bbox"][1] + a["bbox"][3],
                    ]
                    for a in annos
                ],
                dtype=torch.float32,
            )
        )
        inst.scores = torch.ones(len(annos))
        inst.pred_classes = torch.tensor([a["category_id"] for a in annos])  # already contiguous
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": inst}])
    # Only the first five images have predictions: restrict COCO's image ids to them.
    evaluator._coco_api.dataset["images"] = [
        i
        for i in evaluator._coco_api.dataset["images"]
        if i["id"] in {r["image_id"] for r in records}
    ]
    evaluator._coco_api.imgs = {i["id"]: i for i in evaluator._coco_api.dataset["images"]}
    results = evaluator.evaluate()
    assert set(meta.thing_classes) == {"circle", "rectangle", "triangle"}
    assert results["segm"]["AP"] == pytest.approx(100.0)
