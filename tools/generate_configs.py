#!/usr/bin/env python
"""Write the benchmark configs of the paper's experiments (sec. 4.2) under configs/.

    .venv/bin/python tools/generate_configs.py  # rewrites configs/{cityscapes,ade20k,...}/semantic/
    .venv/bin/python tools/generate_configs.py --output-dir OUT  # the same files under OUT instead

The configs are plain YAML files checked into the repository; this script is how they were
made, so that the recipe table below is the single place where the paper's numbers live.
tests/config/test_configs.py checks every file against the same table,
tests/config/test_generate_configs.py that this script reproduces the committed files byte for
byte. It writes ``Base-Semantic.yaml`` and the files directly in ``<dataset>/semantic/``
(:data:`GENERATED_FOLDERS`); subfolders there (``authors/``, ``released/``) hold hand-written
configs and are not touched.
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1] / "configs"

# Paper sec. 4.2 (and supplementary sec. D for MobileNetV2): LR, weight decay, crop, batch,
# iterations.
RECIPES: Dict[str, Dict] = {
    "cityscapes": {
        "name": "Cityscapes",
        "lr": 0.01,
        "wd": 5e-4,
        "crop": 769,
        "batch": 8,
        "iters": 40000,
        "classes": 19,
        "train": ("cityscapes_fine_sem_seg_train_checked",),
        "test": ("cityscapes_fine_sem_seg_val_checked",),
    },
    "ade20k": {
        "name": "ADE20K",
        "lr": 0.02,
        "wd": 1e-4,
        "crop": 520,
        "batch": 16,
        "iters": 150000,
        "classes": 150,
        "train": ("ade20k_sem_seg_train_checked",),
        "test": ("ade20k_sem_seg_val_checked",),
    },
    "lip": {
        "name": "LIP",
        "lr": 0.007,
        "wd": 5e-4,
        "crop": 473,
        "batch": 32,
        "iters": 100000,
        "classes": 20,
        "train": ("lip_sem_seg_train",),
        "test": ("lip_sem_seg_val",),
    },
    "pascal_context": {
        "name": "PascalContext",
        "lr": 0.001,
        "wd": 1e-4,
        "crop": 520,
        "batch": 16,
        "iters": 30000,
        "classes": 59,
        "train": ("pascal_context_59_sem_seg_train",),
        "test": ("pascal_context_59_sem_seg_val",),
    },
    "coco_stuff": {
        "name": "COCOStuff",
        "lr": 0.001,
        "wd": 1e-4,
        "crop": 520,
        "batch": 16,
        "iters": 60000,
        "classes": 171,
        "train": ("coco_stuff_10k_sem_seg_train",),
        "test": ("coco_stuff_10k_sem_seg_test",),
    },
}
# Test-time settings per dataset: Cityscapes' 1024x2048 images in 769x769 windows (bounded
# memory, as mmseg/openseg evaluate them); LIP with flip testing and the left/right part swap
# (the paper's LIP numbers use "only flip testing").
TEST_EXTRAS = {
    "cityscapes": (
        "TEST:\n  SLIDING_WINDOW:\n    ENABLED: True\n    SIZE: (769, 769)\n"
        "    STRIDE: (513, 513)\n"
    ),
    "lip": (
        "TEST:\n  AUG:\n    ENABLED: True\n    SCALES: (1.0,)\n    FLIP: True\n"
        "    FLIP_CHANNEL_PAIRS: [[14, 15], [16, 17], [18, 19]]  # left/right arm, leg, shoe\n"
    ),
}
CITYSCAPES_TRAINVAL = (
    "cityscapes_fine_sem_seg_train_checked",
    "cityscapes_fine_sem_seg_val_checked",
)
MOBILENET_BATCH, MOBILENET_ITERS = 16, 100000

BACKBONES = {
    "R101": """MODEL:
  WEIGHTS: "pretrained/torchvision_resnet101.pkl"  # tools/convert_pretrained.py, docs/backbones.md
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  BACKBONE:
    NAME: "build_dilated_resnet_backbone"
    FREEZE_AT: 0
  RESNETS:
    DEPTH: 101
    STEM_TYPE: "basic"
    STEM_OUT_CHANNELS: 64
    STRIDE_IN_1X1: False  # torchvision weights
    NORM: "SyncBN"
    OUT_FEATURES: ["res4", "res5"]
    RES4_DILATION: 2
    RES5_DILATION: 4  # output stride 8
    RES5_MULTI_GRID: [1, 1, 1]
  SEM_SEG_HEAD:
    IN_FEATURES: ["res5"]  # stage 4
    AUX_IN_FEATURE: "res4"  # stage 3: soft object regions / auxiliary loss
    AUX_CHANNELS: 512
INPUT:
  FORMAT: "RGB"
""",
    "HRNetV2W48": """MODEL:
  WEIGHTS: "pretrained/hrnetv2_w48_imagenet.pkl"  # tools/convert_pretrained.py, docs/backbones.md
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  BACKBONE:
    NAME: "build_hrnet_backbone"
    FREEZE_AT: 0
  HRNET:
    WIDTH: 48
    NORM: "SyncBN"
    OUT_FEATURES: ["concat"]
  SEM_SEG_HEAD:
    IN_FEATURES: ["concat"]  # HRNet: both read the final representation (720 channels)
    AUX_IN_FEATURE: "concat"
    AUX_CHANNELS: 720
    AUX_KERNEL_SIZE: 1  # HRNet-OCR's 1x1 720->720: 70.4M parameters with OCR
INPUT:
  FORMAT: "RGB"
""",
    "MobileNetV2": """MODEL:
  WEIGHTS: "pretrained/torchvision_mobilenet_v2.pkl"  # tools/convert_pretrained.py
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  BACKBONE:
    NAME: "build_mobilenetv2_backbone"
    FREEZE_AT: 0
  MOBILENETV2:
    OUT_FEATURES: ["stage4", "stage5"]  # output stride 8
  SEM_SEG_HEAD:
    IN_FEATURES: ["stage5"]  # 320 channels
    AUX_IN_FEATURE: "stage4"  # 96 channels
    AUX_CHANNELS: 256
  OCR:  # the authors' cheaper "OCR-B" widths suit a 320-channel backbone; the fine-only
    MID_CHANNELS: 256  # baseline reads MID_CHANNELS too, so both heads share the 3x3 conv
    KEY_CHANNELS: 128
INPUT:
  FORMAT: "RGB"
""",
}

# Heads of the comparisons (paper Tables 1-3, supplementary Tables 1-2): file prefix -> YAML.
HEADS = {
    "ocr": 'NAME: "OCRHead"',
    "ppm": 'NAME: "PPMHead"',
    "aspp": 'NAME: "ASPPHead"',
    "self_attention": 'NAME: "SelfAttentionHead"',
    "double_attention": 'NAME: "DoubleAttentionHead"',
    "danet": 'NAME: "DANetHead"',
    "cc_attention": 'NAME: "CCAttentionHead"',
    "ocr_no_region_sup": 'NAME: "OCRNoRegionSupervisionHead"',
    "ocr_da_relations": 'NAME: "OCRDoubleAttentionRelationHead"',
    "ocr_acf_relations": 'NAME: "OCRACFRelationHead"',
    "ocr_gt_oracle": 'NAME: "OCRGroundTruthHead"',
    "coarse_only": 'NAME: "CoarseOnlyHead"',
    "fine_only": 'NAME: "FineOnlyHead"',
    "label_ensemble": 'NAME: "LabelEnsembleHead"',
    "label_refinement": 'NAME: "LabelRefinementHead"',
}
# Keys a head needs besides its NAME: under MODEL.SEM_SEG_HEAD, under MODEL, at the top level.
HEAD_SEM_SEG_EXTRAS = {
    "fine_only": 'AUX_IN_FEATURE: ""  # no coarse segmentation (supplementary Table 1)',
    "coarse_only": (
        'IN_FEATURES: ["res4"]  # prediction from stage 3 only\n    AUX_IN_FEATURE: "res4"'
    ),
}
HEAD_MODEL_EXTRAS = {
    "coarse_only": (
        '  RESNETS:\n    OUT_FEATURES: ["res4"]  # stage 4 unused (idle parameters break DDP)\n'
    ),
}
HEAD_TOP_EXTRAS = {
    "ocr_gt_oracle": (
        "INPUT:\n  LOAD_SEM_SEG_IN_TEST: True  # OCR* reads the ground truth at inference too\n"
    ),
}
TABLE_ROWS = {  # which heads each dataset gets on dilated ResNet-101
    "cityscapes": [
        "ocr",
        "ppm",
        "aspp",
        "self_attention",
        "double_attention",
        "danet",
        "cc_attention",
        "ocr_no_region_sup",
        "ocr_da_relations",
        "ocr_acf_relations",
        "ocr_gt_oracle",
        "coarse_only",
        "fine_only",
        "label_ensemble",
        "label_refinement",
    ],
    "ade20k": [
        "ocr",
        "ppm",
        "aspp",
        "self_attention",
        "double_attention",
        "cc_attention",
        "ocr_gt_oracle",
    ],
    "lip": ["ocr", "ppm", "aspp", "self_attention", "double_attention", "ocr_gt_oracle"],
    "pascal_context": ["ocr", "ocr_gt_oracle"],
    "coco_stuff": ["ocr", "ocr_gt_oracle"],
}
COARSE_HEADS = ["ocr", "ppm", "aspp", "self_attention", "double_attention"]  # "w/ coarse" columns
DOUBLE_ATTENTION_K = [8, 16, 32, 64, 128]  # supplementary Table 2
# Folders (relative to the output directory) whose top-level *.yaml files are all this script's.
GENERATED_FOLDERS = [f"{key}/semantic" for key in RECIPES]


class _Writer:
    """Writes files under ``root`` and remembers their paths."""

    def __init__(self, root: Path):
        self.root = root
        self.written: List[Path] = []

    def __call__(self, path: Path, text: str) -> None:
        path = self.root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="\n") as f:  # the same bytes on every platform
            f.write(text)
        self.written.append(path)


def _base_semantic() -> str:
    return """# Self-contained base of every semantic-segmentation config of the paper's benchmarks
# (sec. 4.2): poly LR (power 0.9), SGD momentum 0.9, random scale [0.5, 2], crop padded with the
# ignore label, horizontal flip, brightness shift in [-10, 10], auxiliary loss 0.4, SyncBN.
MODEL:
  META_ARCHITECTURE: "OCRSemanticSegmentor"
  DEVICE: "cuda"  # falls back to cpu when CUDA is absent
  SEM_SEG_HEAD:
    IGNORE_VALUE: 255
    NORM: "SyncBN"  # naiveSyncBN on CPU (panoptic_ocr.config.adapt_config_to_device)
    LOSS_WEIGHT: 1.0
    AUX_LOSS_WEIGHT: 0.4
    AUX_DROPOUT: 0.05
INPUT:
  DATASET_MAPPER_NAME: "semantic"
  MIN_SIZE_TRAIN: (0,)  # no resize before the random scale
  MIN_SIZE_TEST: 0  # evaluate at the original size
  RANDOM_SCALE: (0.5, 2.0)
  CROP:
    ENABLED: True
    TYPE: "absolute"
  RANDOM_FLIP: "horizontal"
  BRIGHTNESS_DELTA: 10.0
SOLVER:
  LR_SCHEDULER_NAME: "WarmupPolyLR"
  POLY_LR_POWER: 0.9
  POLY_LR_CONSTANT_ENDING: 0.0
  MOMENTUM: 0.9
  WARMUP_ITERS: 0
  CHECKPOINT_PERIOD: 5000
TEST:
  EVAL_PERIOD: 0
DATALOADER:
  NUM_WORKERS: 4
VERSION: 2
"""


def _dataset_base(key: str, r: Dict) -> str:
    crop = r["crop"]
    epochs_note = f"{r['iters']} iterations x {r['batch']} images"
    return (
        f"# {r['name']} with the paper's recipe (sec. 4.2): LR {r['lr']}, "
        f"""weight decay {r["wd"]},
# crop {crop}x{crop}, batch {r["batch"]}, {epochs_note}.
_BASE_: "../../Base-Semantic.yaml"
MODEL:
  SEM_SEG_HEAD:
    NUM_CLASSES: {r["classes"]}
DATASETS:
  TRAIN: {_tuple(r["train"])}
  TEST: {_tuple(r["test"])}
INPUT:
  CROP:
    SIZE: ({crop}, {crop})
SOLVER:
  BASE_LR: {r["lr"]}
  WEIGHT_DECAY: {r["wd"]}
  IMS_PER_BATCH: {r["batch"]}
  MAX_ITER: {r["iters"]}
""" + TEST_EXTRAS.get(key, "")
    )


def _tuple(names) -> str:
    return "(" + ", ".join(f'"{n}"' for n in names) + ",)"


def _leaf(
    base: str, comment: str, head_key: str, out: str, model_extra: str = "", top_extra: str = ""
) -> str:
    text = f'# {comment}\n_BASE_: "{base}"\nMODEL:\n  SEM_SEG_HEAD:\n    {HEADS[head_key]}\n'
    if head_key in HEAD_SEM_SEG_EXTRAS:
        text += f"    {HEAD_SEM_SEG_EXTRAS[head_key]}\n"
    text += HEAD_MODEL_EXTRAS.get(head_key, "") + model_extra
    text += HEAD_TOP_EXTRAS.get(head_key, "") + top_extra
    return text + f'OUTPUT_DIR: "{out}"\n'


def generate(output_dir: Optional[Path] = None) -> List[Path]:
    """Write every config under ``output_dir`` (default: the repository's ``configs/``).

    Returns:
        the written paths, in writing order.
    """
    _write = _Writer(Path(output_dir) if output_dir is not None else ROOT)
    _write(Path("Base-Semantic.yaml"), _base_semantic())
    for key, r in RECIPES.items():
        folder = Path(key) / "semantic"
        base_name = f"Base-{r['name']}.yaml"
        _write(folder / base_name, _dataset_base(key, r))
        backbones = ["R101", "HRNetV2W48"] + (["MobileNetV2"] if key == "cityscapes" else [])
        for bb in backbones:
            text = f'# {r["name"]} on {bb}.\n_BASE_: "{base_name}"\n' + BACKBONES[bb]
            if bb == "MobileNetV2":
                text += (
                    f"SOLVER:\n  IMS_PER_BATCH: {MOBILENET_BATCH}  # supplementary sec. D\n"
                    f"  MAX_ITER: {MOBILENET_ITERS}\n"
                )
            _write(folder / f"Base-{r['name']}-{bb}.yaml", text)
        crop, batch, kiters = r["crop"], r["batch"], r["iters"] // 1000
        tag = f"bs{batch}_crop{crop}_poly_{kiters}k"
        for head in TABLE_ROWS[key]:
            name = f"{head}_R101_os8_{tag}"
            _write(
                folder / f"{name}.yaml",
                _leaf(
                    f"Base-{r['name']}-R101.yaml",
                    f"{r['name']}, {head} on dilated ResNet-101 (OS 8).",
                    head,
                    f"output/{key}/{name}",
                ),
            )
        name = f"ocr_HRNetV2W48_{tag}"
        _write(
            folder / f"{name}.yaml",
            _leaf(
                f"Base-{r['name']}-HRNetV2W48.yaml",
                f"{r['name']}, OCR on HRNetV2-W48 (OS 4).",
                "ocr",
                f"output/{key}/{name}",
            ),
        )
        if key == "cityscapes":
            for k in DOUBLE_ATTENTION_K:
                name = f"double_attention_k{k}_R101_os8_{tag}"
                extra = f"  DOUBLE_ATTENTION:\n    NUM_REGIONS: {k}\n"
                _write(
                    folder / f"{name}.yaml",
                    _leaf(
                        "Base-Cityscapes-R101.yaml",
                        f"Supplementary Table 2: Double Attention with K={k} regions.",
                        "double_attention",
                        f"output/{key}/{name}",
                        model_extra=extra,
                    ),
                )
            trainval = (
                f"DATASETS:\n  TRAIN: {_tuple(CITYSCAPES_TRAINVAL)}  # for the test server\n"
                "SOLVER:\n  MAX_ITER: 100000\n"
            )
            for bb, prefix in (("R101", "ocr_R101_os8"), ("HRNetV2W48", "ocr_HRNetV2W48")):
                name = f"{prefix}_bs8_crop769_poly_100k_trainval"
                _write(
                    folder / f"{name}.yaml",
                    _leaf(
                        f"Base-Cityscapes-{bb}.yaml",
                        "Cityscapes train+val, 100K iterations (test-server entries).",
                        "ocr",
                        f"output/{key}/{name}",
                        top_extra=trainval,
                    ),
                )
            for head in COARSE_HEADS:
                name = f"{head}_R101_os8_bs8_crop769_poly_coarse_50k"
                coarse = (
                    "DATASETS:\n"
                    '  TRAIN: ("cityscapes_coarse_sem_seg_train_extra", '
                    '"cityscapes_coarse_sem_seg_train")\n'
                    "SOLVER:\n  MAX_ITER: 50000\n"
                )
                _write(
                    folder / f"{name}.yaml",
                    _leaf(
                        "Base-Cityscapes-R101.yaml",
                        "'w/ coarse', step 1: fine-tune the fine-trained model on the coarse "
                        "labels, 50K iterations. Set MODEL.WEIGHTS to the train+val model.",
                        head,
                        f"output/{key}/{name}",
                        top_extra=coarse,
                    ),
                )
                name2 = f"{head}_R101_os8_bs8_crop769_poly_trainval_20k_after_coarse"
                after = (
                    f"DATASETS:\n  TRAIN: {_tuple(CITYSCAPES_TRAINVAL)}\n"
                    "SOLVER:\n  MAX_ITER: 20000\n"
                )
                _write(
                    folder / f"{name2}.yaml",
                    _leaf(
                        "Base-Cityscapes-R101.yaml",
                        "'w/ coarse', step 2: fine-tune on train+val for 20K iterations, "
                        f"from output/{key}/{name}/model_final.pth (set MODEL.WEIGHTS).",
                        head,
                        f"output/{key}/{name2}",
                        top_extra=after,
                    ),
                )
            for head in ("fine_only", "ocr"):
                name = f"{head}_MobileNetV2_os8_bs16_crop769_poly_100k"
                _write(
                    folder / f"{name}.yaml",
                    _leaf(
                        "Base-Cityscapes-MobileNetV2.yaml",
                        "Supplementary Table 8: MobileNetV2"
                        + (" + OCR." if head == "ocr" else " baseline."),
                        head,
                        f"output/{key}/{name}",
                    ),
                )
    return _write.written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT, help=f"where to write (default: {ROOT})"
    )
    args = parser.parse_args(argv)
    written = generate(args.output_dir)
    print(f"Wrote {len(written)} configs under {args.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
