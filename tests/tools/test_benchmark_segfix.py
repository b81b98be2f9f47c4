"""tools/benchmark_segfix.py: each model run plain and refined by its seed's SegFix run, through
the inference builder, and the before/after report."""

import torch
from conftest import (
    SHARED_DATA,
    load_tool,
    register_first_images,
    save_run_weights,
    tiny_run_folder,
)

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


def test_targets_and_loader_costs_on_the_shared_cityscapes_sample(capsys):
    tool = load_tool("benchmark_segfix")
    root = SHARED_DATA / "cityscapes"
    label = f"{root}/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"
    image = f"{root}/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    cost = tool.targets_cost(label, crop=(64, 96), runs=1)
    assert cost["size"] == "128x256" and cost["crop"] == "64x96"
    assert all(cost[k] > 0 for k in ("read_label_ms", "targets_crop_ms", "read_targets_ms"))
    assert "cached total / label read" in tool.format_targets_cost(cost)
    loader = tool.mapper_cost(image, label, crop=(64, 96), runs=1)
    assert set(loader) == {"semantic", "segfix_online", "segfix_cached"}
    report = tool.format_mapper_cost(loader)
    assert report.count("\n| segfix") == 2
    assert tool.main(["--targets", label, "--image", image, "--crop", "64", "96"]) == 0
    assert 'segfix, TARGETS "cached"' in capsys.readouterr().out
