"""End-to-end training on the toy scenes: loss falls, evaluation, results and overlays, a failed
run keeps what was written (resume: tests/engine/test_resume.py; several processes:
test_launch.py)."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2.utils.env import seed_all_rng
from PIL import Image

from panoptic_ocr.engine import Trainer

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
# A small, fast variant of the quick start: narrower OCR, small crops, no workers.
SMALL = [
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "64",
    "INPUT.CROP.SIZE",
    "(96, 96)",
    "SOLVER.IMS_PER_BATCH",
    "4",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
]


def small_cfg(tmp_path, *opts):
    cfg = make_cfg(QUICKSTART, SMALL + ["OUTPUT_DIR", str(tmp_path)] + list(opts))
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    return cfg


def test_short_training_lowers_loss(tmp_path):
    seed_all_rng(0)  # weights and data order: unseeded, 1 run in ~10 missed the 0.8 margin
    cfg = small_cfg(
        tmp_path, "SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "1000", "DATASETS.TEST", "()"
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert set(trainer.storage.latest()) >= {"loss_sem_seg", "loss_sem_seg_aux", "lr"}


class _LabelOracle(torch.nn.Module):
    """Predicts each test image's ground truth (or one constant class): a model whose exact
    scores are known, to check the loader -> model -> evaluator path of Trainer.test."""

    def __init__(self, num_classes, constant_class=None):
        super().__init__()
        self.num_classes, self.constant_class = num_classes, constant_class
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        from detectron2.data import DatasetCatalog

        records = DatasetCatalog.get("toy_scenes_sem_seg_val")
        labels = {r["file_name"]: r["sem_seg_file_name"] for r in records}
        outputs = []
        for x in inputs:
            label = torch.from_numpy(np.asarray(Image.open(labels[x["file_name"]]), dtype=np.int64))
            assert label.shape == (x["height"], x["width"])
            if self.constant_class is not None:
                label = torch.full_like(label, self.constant_class)
            label[label == 255] = 0
            one_hot = torch.nn.functional.one_hot(label, self.num_classes)
            outputs.append({"sem_seg": one_hot.permute(2, 0, 1).float()})
        return outputs


def test_evaluation_reports_miou_through_the_test_loader(tmp_path):
    majority_baseline = __import__("conftest").load_tool("majority_baseline").majority_baseline

    cfg = small_cfg(tmp_path)
    perfect = Trainer.test(cfg, _LabelOracle(7))["sem_seg"]
    assert perfect["mIoU"] == pytest.approx(100.0) and perfect["pACC"] == pytest.approx(100.0)
    baseline = majority_baseline("toy_scenes_sem_seg_train", "toy_scenes_sem_seg_val")
    assert baseline["majority_class"] == "ground"
    constant = Trainer.test(cfg, _LabelOracle(7, constant_class=4))["sem_seg"]
    assert constant["mIoU"] == pytest.approx(baseline["mIoU"]) and constant["mIoU"] < 15
    assert (tmp_path / "inference" / "toy_scenes_sem_seg_val" / "sem_seg_evaluation.pth").exists()


def test_trainer_leaves_detectron2s_create_ddp_model_alone(tmp_path):
    from detectron2.engine import defaults as d2_defaults

    original = d2_defaults.create_ddp_model
    seen = []

    class Probe(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):  # called inside Trainer.__init__
            seen.append(d2_defaults.create_ddp_model)
            return super().build_train_loader(cfg)

    trainer = Probe(small_cfg(tmp_path, "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()"))
    assert seen and all(f is original for f in seen)
    assert d2_defaults.create_ddp_model is original
    # What DefaultTrainer.__init__ builds is there.
    assert trainer.checkpointer.save_dir == str(tmp_path) and trainer.max_iter == 1
    # The resumable WarmupPolyLR.
    assert trainer.scheduler.__class__.__name__ == "LRMultiplier" and trainer.optimizer is not None


@pytest.fixture
def two_val_images():
    """``toy_scenes_sem_seg_val`` cut to its first 2 images (a fast evaluation)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "test_training_toy_scenes_sem_seg_val2"
    DatasetCatalog.register(name, lambda: DatasetCatalog.get("toy_scenes_sem_seg_val")[:2])
    meta = MetadataCatalog.get("toy_scenes_sem_seg_val").as_dict()
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_training_keeps_its_results_and_saves_overlays(tmp_path, two_val_images):
    cfg = small_cfg(
        tmp_path,
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "VIS.NUM_IMAGES",
        "1",
        "DATASETS.TEST",
        f'("{two_val_images}",)',
    )
    trainer = Trainer(cfg)
    assert trainer.last_eval_results is None
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert results == trainer.last_eval_results and 0 <= results["sem_seg"]["mIoU"] <= 100
    assert len(list((tmp_path / "vis").glob("*_overlay.png"))) == 1


def test_recorded_results_feed_the_panoptic_summary(tmp_path):
    from types import SimpleNamespace

    from detectron2.utils.events import EventStorage

    from panoptic_ocr.engine import PanopticSummaryHook, RecordingEvalHook

    cfg = small_cfg(tmp_path, "DATASETS.TEST", '("toy_scenes_panoptic_val_separated",)')
    panoptic = {
        "panoptic_seg": {"PQ": 50.0, "PQ_th": 40.0, "PQ_st": 60.0},
        "sem_seg": {"mIoU": 70.0},
    }
    table = PanopticSummaryHook(cfg).log(panoptic)
    cells = [c.strip() for c in table.splitlines()[-1].strip("| ").split("|")]
    assert cells[:2] == ["toy_scenes_panoptic_val_separated", "-"]  # no mask AP evaluated
    assert [float(c) for c in cells[2:]] == [40.0, 70.0, 60.0, 50.0]  # PQ-Th, mIoU, PQ-St, PQ
    assert PanopticSummaryHook(cfg).log({"sem_seg": {"mIoU": 70.0}}) is None  # nothing panoptic

    def hooks():
        plain = RecordingEvalHook(0, lambda: panoptic)
        tta = RecordingEvalHook(0, lambda: {"sem_seg_TTA": {"mIoU": 71.0}})
        summary = PanopticSummaryHook(cfg, [plain, tta])
        summary.log = logged.append
        return plain, tta, summary

    with EventStorage() as storage:
        logged = []
        for hook in hooks():  # a training that stopped early: no evaluation, no summary
            hook.trainer = SimpleNamespace(iter=3, max_iter=5, storage=storage)
            hook.after_train()
        assert logged == []
        plain, tta, summary = hooks()
        for hook in (plain, tta, summary):
            hook.trainer = SimpleNamespace(iter=5, max_iter=5, storage=storage)
            hook.after_train()
    assert plain.latest_results == panoptic
    assert logged == [{**panoptic, "sem_seg_TTA": {"mIoU": 71.0}}]


def _train_net(*args, env=None, timeout=600):
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_net.py"),
            "--config-file",
            str(REPO_ROOT / QUICKSTART),
            *args,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _hashes(folder):
    """SHA-256 of every file of ``folder``, by name."""
    files = [p for p in folder.iterdir() if p.is_file()]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_failure_keeps_what_was_written(tmp_path):
    trainer = Trainer(small_cfg(tmp_path, "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()"))
    trainer.resume_or_load(resume=False)
    trainer.train()
    before = _hashes(tmp_path)
    assert "model_final.pth" in before

    broken = tmp_path / "data"
    (broken / "toy_scenes").mkdir(parents=True)  # exists but incomplete
    out = _train_net(
        "--resume",
        *SMALL,
        "SOLVER.MAX_ITER",
        "4",
        "OUTPUT_DIR",
        str(tmp_path),
        env={"DETECTRON2_DATASETS": str(broken)},
    )
    assert out.returncode != 0
    assert "prepare_toy_scenes.py" in out.stderr and str(broken / "toy_scenes") in out.stderr
    after = _hashes(tmp_path)
    for name in ("model_final.pth", "last_checkpoint", "metrics.json"):
        assert after[name] == before[name], f"{name} changed after a failed run"
