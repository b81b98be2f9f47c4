"""tools/benchmark_segfix.py: each model run plain and refined by its seed's SegFix run, through
the inference builder, and the before/after report."""

import torch
from conftest import load_tool, register_first_images, save_run_weights, tiny_run_folder

SINGLE = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
SEGFIX = "configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml"
SUBSET = "toy_scenes_sem_seg_val_first2_segfix_benchmark_test"


def _known_segfix(path, seed):
    """A SegFix run whose heads ignore the image: boundary everywhere, direction (0, +1), so
    that refinement surely acts."""
    folder, model = tiny_run_folder(path, SEGFIX, seed, ["MODEL.SEGFIX.MID_CHANNELS", "8"])
    with torch.no_grad():
        for head, channel in ((model.boundary_head, 1), (model.direction_head, 4)):
            head[0].norm.weight.zero_()
            head[0].norm.bias.fill_(1.0)
            head[1].weight.zero_()
            head[1].weight[channel] = 1.0
    save_run_weights(folder, model)
    return folder


def test_plain_and_refined_per_seed(tmp_path):
    tool = load_tool("benchmark_segfix")
    register_first_images(SUBSET)
    models = [tiny_run_folder(tmp_path / f"ocr{s}", SINGLE, s)[0] for s in (1, 2)]
    segfix = [_known_segfix(tmp_path / f"segfix{s}", s) for s in (1, 2)]
    rows = tool.benchmark([("OCR", models)], segfix, dataset=SUBSET)
    assert [(r.method, r.run) for r in rows] == [
        ("OCR", models[0]),
        ("OCR + SegFix", models[0]),
        ("OCR", models[1]),
        ("OCR + SegFix", models[1]),
    ]
    assert (rows[0].miou, rows[0].mbiou) != (rows[1].miou, rows[1].mbiou)  # refinement acted
    report = tool.format_report(rows)
    assert report.count("\n| OCR") == 2 and "Δ mIoU" in report
    three = models + [models[0]]
    assert tool.main(["--models", "OCR", *three, "--segfix", *segfix]) == 1  # 3 runs, 2 SegFix
    one = tool.benchmark([("OCR", models)], segfix[:1], dataset=SUBSET)  # one SegFix for all
    assert [r.method for r in one] == ["OCR", "OCR + SegFix"] * 2
