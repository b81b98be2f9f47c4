"""tools/benchmark_segfix.py: each model run plain and refined by its seed's SegFix run, through
the inference builder, and the before/after report."""

import torch
from conftest import RANDOM_WEIGHTS, TINY_OCR, load_tool, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

SINGLE = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
SEGFIX = "configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml"
SUBSET = "toy_scenes_sem_seg_val_first2_segfix_benchmark_test"


def _run_folder(path, config, seed, opts=()):
    path.mkdir()
    cfg = make_cfg(config, RANDOM_WEIGHTS + TINY_OCR + list(opts))
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = cfg.MODEL.SEGFIX.NORM = "BN"
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    torch.manual_seed(seed)
    model = build_model(cfg)
    if config == SEGFIX:  # boundary everywhere, direction (0, +1): refinement surely acts
        with torch.no_grad():
            for head, channel in ((model.boundary_head, 1), (model.direction_head, 4)):
                head[0].norm.weight.zero_()
                head[0].norm.bias.fill_(1.0)
                head[1].weight.zero_()
                head[1].weight[channel] = 1.0
    torch.save({"model": model.state_dict()}, path / "model_final.pth")
    (path / "config.yaml").write_text(cfg.dump())
    return str(path)


def test_plain_and_refined_per_seed(tmp_path):
    tool = load_tool("benchmark_segfix")
    if SUBSET not in DatasetCatalog.list():
        records = DatasetCatalog.get("toy_scenes_sem_seg_val")[:2]
        DatasetCatalog.register(SUBSET, lambda: records)
        meta = MetadataCatalog.get("toy_scenes_sem_seg_val")
        MetadataCatalog.get(SUBSET).set(
            stuff_classes=meta.stuff_classes,
            ignore_label=meta.ignore_label,
            evaluator_type="sem_seg",
        )
    models = [_run_folder(tmp_path / f"ocr{s}", SINGLE, s) for s in (1, 2)]
    segfix = [
        _run_folder(tmp_path / f"segfix{s}", SEGFIX, s, ["MODEL.SEGFIX.MID_CHANNELS", "8"])
        for s in (1, 2)
    ]
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
