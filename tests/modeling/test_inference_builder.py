"""The one inference builder: every model kind honours (or rejects) the inference keys."""

import pytest
import torch
from conftest import make_cfg
from detectron2.modeling import build_model

from panoptic_ocr.modeling.inference import build_inference_model
from panoptic_ocr.modeling.precision import AutocastInference
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA

PANOPTIC = "configs/toy_scenes/panoptic_fpn_ocr_R18_toy_scenes_600it.yaml"
SEMANTIC = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"


def _model(config, opts=()):
    cfg = make_cfg(config, ["MODEL.WEIGHTS", "", *opts])
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def _inputs(size=(64, 80)):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, *size), generator=g).float(),
            "height": size[0],
            "width": size[1],
        }
    ]


def _conv_output_dtypes(model):
    """Record the output dtype of every Conv2d call of ``model`` (autocast casts inside)."""
    seen = []
    handles = [
        m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    return seen, handles


def test_no_inference_option_returns_the_model_itself():
    cfg, model = _model(SEMANTIC)
    assert build_inference_model(cfg, model) is model
    cfg, panoptic = _model(PANOPTIC)
    assert build_inference_model(cfg, panoptic) is panoptic


def test_panoptic_fpn_runs_in_bfloat16_and_returns_float32():
    cfg, model = _model(PANOPTIC)
    cfg.MODEL.INFERENCE_DTYPE = "bfloat16"
    inference = build_inference_model(cfg, model)
    assert isinstance(inference, AutocastInference) and inference.model is not model
    seen, handles = _conv_output_dtypes(inference)
    with torch.no_grad():
        out = inference(_inputs())[0]
        ref = model(_inputs())[0]
    for h in handles:
        h.remove()
    assert seen and all(d == torch.bfloat16 for d in seen), set(seen)
    assert out["sem_seg"].dtype == torch.float32
    assert out["instances"].pred_boxes.tensor.dtype == torch.float32
    # The training model keeps float32 weights; the copy's convs hold bfloat16 ones.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    agree = (out["sem_seg"].argmax(0) == ref["sem_seg"].argmax(0)).float().mean()
    assert agree > 0.9, agree


def test_tta_gets_the_reduced_precision_copy():
    cfg, model = _model(SEMANTIC, ["TEST.AUG.SCALES", "(1.0, 0.75)"])
    tta = SemanticSegmentorWithTTA.from_config(cfg, model)
    cfg.MODEL.INFERENCE_DTYPE = "bfloat16"
    inference = build_inference_model(cfg, tta)
    assert isinstance(inference, SemanticSegmentorWithTTA) and inference.model is not model
    assert inference.model.inference_dtype == "bfloat16"
    assert inference.scales == tta.scales and inference.flip == tta.flip
    convs = [m for m in inference.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.dtype == torch.bfloat16 for c in convs)
    seen, handles = _conv_output_dtypes(inference)
    with torch.no_grad():
        out = inference(_inputs())[0]["sem_seg"]
    for h in handles:
        h.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert out.dtype == torch.float32 and torch.allclose(
        out.sum(0), torch.ones_like(out[0]), atol=1e-4
    )


def test_keys_a_model_cannot_honour_are_errors_naming_the_key():
    cfg, model = _model(PANOPTIC)
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    with pytest.raises(ValueError, match="TEST.SLIDING_WINDOW.ENABLED.*PanopticFPN"):
        build_inference_model(cfg, model)
    with pytest.raises(ValueError, match="TEST.AUG.ENABLED.*PanopticFPN"):
        SemanticSegmentorWithTTA.from_config(cfg, model)
    cfg, semantic = _model(SEMANTIC)
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    with pytest.raises(ValueError, match="TEST.SLIDING_WINDOW.ENABLED.*built without"):
        build_inference_model(cfg, semantic)


def test_fold_batchnorm_and_channels_last_for_panoptic_fpn_keep_outputs():
    cfg, model = _model(PANOPTIC, ["MODEL.RESNETS.NORM", "BN"])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    cfg.TEST.FOLD_BATCHNORM = True
    cfg.MODEL.INFERENCE_CHANNELS_LAST = True
    inference = build_inference_model(cfg, model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inference.modules())
    with torch.no_grad():
        a = inference(_inputs())[0]["sem_seg"]
        b = model(_inputs())[0]["sem_seg"]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_postprocess_skips_only_the_identity_resize():
    from detectron2.modeling.postprocessing import sem_seg_postprocess

    from panoptic_ocr.modeling.meta_arch.semantic_segmentor import postprocess_logits

    logits = torch.randn(5, 40, 48)
    for image_size, out in [((37, 45), (37, 45)), ((37, 45), (74, 90)), ((40, 48), (21, 33))]:
        expected = sem_seg_postprocess(logits, image_size, *out)
        got = postprocess_logits(logits, image_size, *out)
        assert got.shape == expected.shape and torch.equal(got, expected), (image_size, out)
