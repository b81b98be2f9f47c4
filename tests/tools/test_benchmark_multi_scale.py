"""tools/benchmark_multi_scale.py: every method on every run folder, through the test loader and
the evaluators, and a report with the runs' spread."""

import torch
from conftest import RANDOM_WEIGHTS, TINY_OCR, load_tool, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

SINGLE = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
HMSA = "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml"
SUBSET = "toy_scenes_sem_seg_val_first2_benchmark_test"


def _run_folder(path, config, seed):
    """A train_net.py-like run folder (config.yaml, model_final.pth) of a tiny random model."""
    path.mkdir()
    cfg = make_cfg(config, RANDOM_WEIGHTS + TINY_OCR + ["MODEL.HMSA.ATTENTION_CHANNELS", "8"])
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    torch.manual_seed(seed)
    torch.save({"model": build_model(cfg).state_dict()}, path / "model_final.pth")
    (path / "config.yaml").write_text(cfg.dump())
    return str(path)


def test_every_method_on_every_run(tmp_path):
    tool = load_tool("benchmark_multi_scale")
    if SUBSET not in DatasetCatalog.list():
        records = DatasetCatalog.get("toy_scenes_sem_seg_val")[:2]
        DatasetCatalog.register(SUBSET, lambda: records)
        meta = MetadataCatalog.get("toy_scenes_sem_seg_val")
        MetadataCatalog.get(SUBSET).set(
            stuff_classes=meta.stuff_classes,
            ignore_label=meta.ignore_label,
            evaluator_type="sem_seg",
        )
    single = [_run_folder(tmp_path / f"single{s}", SINGLE, s) for s in (1, 2)]
    hmsa = [_run_folder(tmp_path / f"hmsa{s}", HMSA, s) for s in (1, 2)]
    rows = tool.benchmark(single, hmsa, (0.5, 1.0, 2.0), dataset=SUBSET)
    assert [(r.method, r.run) for r in rows] == [
        ("single scale", single[0]),
        ("multi-scale average", single[0]),
        ("single scale", single[1]),
        ("multi-scale average", single[1]),
        ("HMSA at 1.0", hmsa[0]),
        ("HMSA", hmsa[0]),
        ("HMSA at 1.0", hmsa[1]),
        ("HMSA", hmsa[1]),
    ]
    for r in rows:
        assert 0 <= r.miou <= 100 and 0 <= r.mbiou <= 100
        assert len(r.ms_per_image) == 2 and r.peak_mb > 0
    # the seeds give different models, and averaging scales changes the prediction
    assert rows[0].miou != rows[2].miou or rows[0].mbiou != rows[2].mbiou
    report = tool.format_report(rows, (0.5, 1.0, 2.0))
    assert report.count("\n| ") == 5 and "± " in report and "| HMSA | 2 |" in report
    assert "native bfloat16" in tool.machine_line() and "load average" in tool.machine_line()
    (tmp_path / "empty").mkdir()
    assert tool.main(["--single", str(tmp_path / "empty"), "--hmsa", hmsa[0]]) == 1
