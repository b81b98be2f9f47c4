"""TEST.COMPILE: the evaluated copy of a semantic segmentor has its backbone and head compiled
and computes the eager logits; the trained model is left as it was; models it cannot compile and
unknown modes are refused naming the key."""

import pytest
import torch
from conftest import QUICKSTART, RANDOM_WEIGHTS, REPO_ROOT, TINY_OCR, make_cfg
from detectron2.modeling import build_model

from panoptic_ocr import setup_cfg
from panoptic_ocr.modeling.inference import build_inference_model, compile_network


def test_compiled_copy_matches_eager_and_leaves_the_model_alone():
    torch.manual_seed(0)
    cfg = make_cfg(str(REPO_ROOT / QUICKSTART), RANDOM_WEIGHTS + TINY_OCR)
    cfg.defrost()
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    model = build_model(cfg).eval()
    cfg.TEST.COMPILE.ENABLED = True
    compiled = build_inference_model(cfg, model)
    assert compiled is not model
    assert isinstance(compiled.backbone, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(model.backbone, torch._dynamo.eval_frame.OptimizedModule)
    image = torch.rand(3, 48, 64) * 255
    with torch.inference_mode():
        eager = model([{"image": image, "height": 60, "width": 80}])[0]["sem_seg"]
        ours = compiled([{"image": image, "height": 60, "width": 80}])[0]["sem_seg"]
    assert ours.shape == eager.shape == (7, 60, 80)
    torch.testing.assert_close(ours, eager, rtol=1e-4, atol=1e-4)


def test_refusals_name_the_key():
    cfg = make_cfg(str(REPO_ROOT / "configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml"))
    cfg.defrost()
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.TEST.COMPILE.ENABLED = True
    with pytest.raises(ValueError, match="TEST.COMPILE.ENABLED.*PanopticFPN"):
        build_inference_model(cfg, build_model(cfg).eval())
    with pytest.raises(ValueError, match="TEST.COMPILE.MODE"):
        compile_network(torch.nn.Module(), "fastest")
    with pytest.raises(ValueError, match="TEST.COMPILE.MODE is 'fastest'"):
        setup_cfg(str(REPO_ROOT / QUICKSTART), ["TEST.COMPILE.MODE", "fastest"])
