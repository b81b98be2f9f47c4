"""ONNX / TorchScript export: the exported files compute the PyTorch model's logits on the real
sample images and odd sizes (every format, OCR / PPM / ASPP), refuse to overwrite, and the
matrix form of adaptive pooling equals PyTorch's."""

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, RANDOM_WEIGHTS, REPO_ROOT, SHARED_DATA, load_tool
from torch import nn

from panoptic_ocr import setup_cfg
from panoptic_ocr.export import (
    MatrixAdaptiveAvgPool2d,
    check_export,
    check_images,
    export_model,
    load_exported,
)
from panoptic_ocr.utils.safe_write import OutputExistsError

pytest.importorskip("onnxruntime")
SAMPLES = [
    SHARED_DATA / "cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
    SHARED_DATA / "ade20k/ADEChallengeData2016/images/validation/ADE_val_00000002.jpg",
]
CONFIG = str(REPO_ROOT / QUICKSTART)
# Small widths: the graph is the same, the check faster.
SMALL = RANDOM_WEIGHTS + [
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "64",
    "MODEL.PPM.BRANCH_CHANNELS",
    "32",
    "MODEL.PPM.OUT_CHANNELS",
    "64",
    "MODEL.ASPP.CHANNELS",
    "32",
]


@pytest.fixture(autouse=True)
def _seeded():
    """The same random weights whatever ran before in this process (another order, another
    xdist worker): the argmax agreement of a random model can hang on near-tied logits."""
    torch.manual_seed(0)


def _samples():
    if not all(p.is_file() for p in SAMPLES):
        pytest.skip(f"shared sample images absent under {SHARED_DATA}")
    return [str(p) for p in SAMPLES]


@pytest.mark.parametrize("head", ["OCRHead", "PPMHead", "ASPPHead"])
def test_onnx_matches_pytorch_on_samples_and_odd_sizes(tmp_path, head):
    cfg = setup_cfg(CONFIG, SMALL + ["MODEL.SEM_SEG_HEAD.NAME", head])
    path = str(tmp_path / "model.onnx")
    model = export_model(cfg, path, "onnx")
    images = check_images(_samples(), cfg.INPUT.FORMAT)
    checks = check_export(path, model, images)
    assert [(c.height, c.width) for c in checks][2:] == [(97, 131), (61, 203)]
    for c in checks:
        assert c.max_abs_diff <= 1e-4 and c.agreement >= 0.9999, c
    assert not any(m.training for m in model.modules())  # exporting left the model in eval
    # The file really runs the model: logits are not constant and change with the input.
    run, meta = load_exported(path)
    assert meta["kind"] == "semantic" and meta["head"] == head
    a = run(torch.rand(1, 3, 65, 77).numpy() * 255)
    b = run(torch.rand(1, 3, 65, 77).numpy() * 255)
    assert a.shape == (1, 7, 65, 77) and abs(a - b).max() > 1e-3


def test_multi_scale_attention_exports_with_its_scales(tmp_path):
    """HMSA's three scales are in the graph; the file matches PyTorch on the samples and on odd
    sizes (the rescaling is dynamic) and records the scales it holds."""
    config = str(REPO_ROOT / "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml")
    cfg = setup_cfg(config, SMALL + ["MODEL.HMSA.ATTENTION_CHANNELS", "16"])
    path = str(tmp_path / "hmsa.onnx")
    model = export_model(cfg, path, "onnx")
    checks = check_export(path, model, check_images(_samples(), cfg.INPUT.FORMAT))
    assert [(c.height, c.width) for c in checks][2:] == [(97, 131), (61, 203)]
    for c in checks:
        assert c.max_abs_diff <= 1e-4 and c.agreement >= 0.9999, c
    run, meta = load_exported(path)
    assert meta["meta_architecture"] == "HMSASemanticSegmentor"
    assert meta["hmsa_test_scales"] == [0.5, 1.0, 2.0]
    # one scale fewer is another function: the file is not the single-scale model
    image = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        full = model([{"image": image[0]}])[0]["sem_seg"]
        model.test_scales = (1.0,)
        one = model([{"image": image[0]}])[0]["sem_seg"]
    exported = torch.from_numpy(run(image.numpy()))[0]
    assert (exported - full).abs().max() < 1e-4 < (exported - one).abs().max()


def test_torchscript_matches_pytorch_and_refuses_overwrite(tmp_path):
    cfg = setup_cfg(CONFIG, SMALL)
    path = tmp_path / "model.ts"
    model = export_model(cfg, str(path), "torchscript")
    checks = check_export(str(path), model, check_images([], cfg.INPUT.FORMAT))
    assert all(c.max_abs_diff <= 1e-4 and c.agreement >= 0.9999 for c in checks), checks
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="model.ts"):
        export_model(cfg, str(path), "onnx", model=model)
    assert path.read_bytes() == before
    export_model(cfg, str(path), "torchscript", model=model, overwrite=True)


@pytest.mark.parametrize("size,bins", [((13, 9), (6, 6)), ((5, 17), (3, 2)), ((6, 6), (6, 6))])
def test_matrix_adaptive_pool_equals_pytorch(size, bins):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    ours = MatrixAdaptiveAvgPool2d(bins)(x)
    torch.testing.assert_close(ours, nn.AdaptiveAvgPool2d(bins)(x), rtol=0, atol=1e-12)


def test_cli_check_prints_figures_and_refuses_to_overwrite(tmp_path, run_main):
    main = load_tool("export_model").main  # ``python tools/export_model.py argv``, in-process
    argv = [
        "--config-file",
        CONFIG,
        "--format",
        "onnx",
        "--output",
        tmp_path / "m.onnx",
        "--check",
        *SMALL,
        "MODEL.SEM_SEG_HEAD.NAME",
        "PPMHead",
    ]
    status, out, err = run_main(main, argv)
    assert status == 0, err[-3000:]
    assert "argmax agreement" in out and "check passed" in out and "noise@97x131" in out
    status, _, err = run_main(main, argv)
    assert status == 2 and "already exists" in err


def test_default_check_images_are_labelled_by_what_they_are():
    images = check_images([], "RGB")
    assert [name for name, _ in images] == ["noise@97x131", "noise@61x203"]
    assert [image.shape for _, image in images] == [(97, 131, 3), (61, 203, 3)]


def test_every_exported_callable_takes_one_image_in_either_layout(tmp_path):
    """[3, H, W] and [1, 3, H, W], numpy or tensor, give the same logits; other shapes are
    named."""
    from panoptic_ocr.export.runtimes import image_batch

    cfg = setup_cfg(CONFIG, SMALL)
    path = str(tmp_path / "model.onnx")
    export_model(cfg, path, "onnx")
    run, _ = load_exported(path)
    image = torch.rand(3, 40, 52) * 255
    outs = [run(image), run(image[None]), run(image.numpy()), run(image[None].numpy())]
    assert all(o.shape == outs[0].shape and np.array_equal(o, outs[0]) for o in outs)
    with pytest.raises(ValueError, match=r"\[3, H, W\] or \[1, 3, H, W\], got \[2, 3, 40, 52\]"):
        image_batch(torch.zeros(2, 3, 40, 52))


def test_openvino_compiled_for_one_size_matches_and_refuses_others(tmp_path):
    pytest.importorskip("openvino")
    cfg = setup_cfg(CONFIG, SMALL)
    path = str(tmp_path / "model.onnx")
    export_model(cfg, path, "onnx")
    image = torch.rand(1, 3, 40, 52) * 255
    dynamic, _ = load_exported(path, "openvino")
    static, _ = load_exported(path, "openvino", openvino_static_size=(40, 52))
    np.testing.assert_allclose(static(image), dynamic(image), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="compiled for 40x52 images"):
        static(torch.rand(1, 3, 48, 52))
