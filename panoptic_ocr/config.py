"""Config keys of panoptic_ocr. Every key has a default and says what it does."""

import logging
from typing import Iterator, Sequence, Tuple

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from .config_checks import check_config_values
from .modeling.contexts import context_config_nodes

logger = logging.getLogger(__name__)


def add_ocr_config(cfg: CN) -> None:
    """Add panoptic_ocr's keys (and DeepLab's, which it builds on) to a Detectron2 config."""
    add_deeplab_config(cfg)
    # Loss of the final output and of the auxiliary branch, by name in
    # panoptic_ocr.modeling.losses.SEM_SEG_LOSS_REGISTRY (docs/losses.md); an unknown name is an
    # error. DeepLab's default is "hard_pixel_mining"; the OCR paper trains with plain CE.
    # Allowed: cross_entropy, ohem_cross_entropy (HRNet-OCR), ohem_cross_entropy_openseg,
    # hard_pixel_mining (Detectron2's DeepLabCE), rmi, lovasz_softmax.
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE = "cross_entropy"
    # Options of those losses, shared by both branches (each loss reads only its own keys).
    cfg.MODEL.SEM_SEG_HEAD.LOSS = CN()
    # Per-class weights (cross_entropy, both OHEMs, hard_pixel_mining): [] = unweighted, or
    # exactly NUM_CLASSES non-negative floats (rmi and lovasz_softmax take no weights).
    cfg.MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS = []
    # OHEM: keep pixels whose true-class probability < max(OHEM_THRESH, p of the
    # OHEM_MIN_KEPT-th easiest-to-miss pixel). Thresh in [0, 1] (authors: 0.7 default, 0.9 in
    # HRNet-OCR's Cityscapes config); min kept integer >= 1, counted per GPU batch (100000 in
    # both authors' defaults, 131072 in HRNet-OCR's Cityscapes config).
    cfg.MODEL.SEM_SEG_HEAD.LOSS.OHEM_THRESH = 0.7
    cfg.MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT = 100000
    # hard_pixel_mining: fraction in (0, 1] of the largest pixel losses kept (DeepLab: 0.2).
    cfg.MODEL.SEM_SEG_HEAD.LOSS.HARD_PIXEL_TOP_K = 0.2
    # RMI (openseg's): window side 1..10; downsampling stride >= 1 (1 = none, kernel = stride);
    # pooling "max", "avg" or "interpolate"; loss = LAMBDA * BCE + (1 - LAMBDA) * RMI,
    # LAMBDA in [0, 1].
    cfg.MODEL.SEM_SEG_HEAD.LOSS.RMI_RADIUS = 3
    cfg.MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_STRIDE = 3
    cfg.MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_TYPE = "max"
    cfg.MODEL.SEM_SEG_HEAD.LOSS.RMI_LAMBDA = 0.5
    # Lovasz-softmax: True = mean of per-image losses, False = one sort over the batch;
    # classes "present" (in the labels) or "all".
    cfg.MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_PER_IMAGE = False
    cfg.MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_CLASSES = "present"
    # OCRSemanticSegmentor pads each batch to a multiple of this; -1 means the largest
    # backbone output stride, so upsampled logits align exactly with the input pixels.
    cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY = -1

    # ---------------------------------------------------------------------------------------
    # Context heads (OCR, PPM, ASPP, ...): shared keys under MODEL.SEM_SEG_HEAD
    # ---------------------------------------------------------------------------------------
    # The context module reads MODEL.SEM_SEG_HEAD.IN_FEATURES[0]: stage 4 of a dilated ResNet
    # ("res5") or HRNet's final representation.
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res5"]
    # Context module of the generic heads ContextHead / ContextSemSegFPNHead, by its name in
    # panoptic_ocr.modeling.contexts.CONTEXT_REGISTRY: "ocr", "ppm", "aspp", "self_attention",
    # "double_attention", "danet", "cc_attention", "ocr_da_relations", "ocr_acf_relations",
    # "ocr_gt_oracle", "fine", "coarse_only", "label_refinement". The named heads (OCRHead,
    # PPMHead, ...) fix it: leave it "" for them.
    cfg.MODEL.SEM_SEG_HEAD.CONTEXT = ""
    # ContextHead: the context's soft object regions come from a second, unsupervised branch on
    # AUX_IN_FEATURE (Table 1 "w/o supervision"; OCRNoRegionSupervisionHead sets it).
    cfg.MODEL.SEM_SEG_HEAD.UNSUPERVISED_REGIONS = False
    # ContextHead: final logits = (1 - w) * predictor + w * auxiliary logits, w =
    # MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT (the label-ensemble baseline; LabelEnsembleHead sets it).
    cfg.MODEL.SEM_SEG_HEAD.ENSEMBLE_WITH_AUX = False
    # Feature of the auxiliary branch (OCR: the soft object regions; other heads: deep
    # supervision): stage 3 of a dilated ResNet ("res4"); with HRNet the same as IN_FEATURES.
    # "" disables the branch (not allowed for OCR, whose regions come from it).
    cfg.MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE = "res4"
    # Hidden channels of the auxiliary branch (3x3 conv-norm-ReLU, Dropout2d, 1x1 classifier);
    # 0 makes it a single 1x1 classifier, the "linear function" of the paper's section 3.3.
    cfg.MODEL.SEM_SEG_HEAD.AUX_CHANNELS = 512
    # Kernel size of that hidden conv: 3 (authors' ResNet code, openseg) or 1 (HRNet-OCR, mmseg).
    cfg.MODEL.SEM_SEG_HEAD.AUX_KERNEL_SIZE = 3
    # Dropout2d rate inside the auxiliary branch (authors' code: 0.05).
    cfg.MODEL.SEM_SEG_HEAD.AUX_DROPOUT = 0.05
    # Weight of the auxiliary cross-entropy (paper: 0.4).
    cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT = 0.4
    # Behaviour differences of the released OCR models (MODEL_ZOO.md, configs/*/semantic/released/);
    # the defaults are this project's own behaviour.
    # align_corners of every bilinear resize of the head's logits: the auxiliary logits to the
    # feature size, the final upsampling to the input and the resize to the labels in the losses
    # (HRNet-OCR, openseg: True; mmseg: False).
    cfg.MODEL.SEM_SEG_HEAD.ALIGN_CORNERS = False
    # Activation after every norm of the head (OCR module and auxiliary branch): "relu" or
    # "leaky_relu" (openseg master's InPlaceABN default), the latter with LEAKY_RELU_SLOPE.
    cfg.MODEL.SEM_SEG_HEAD.ACTIVATION = "relu"
    cfg.MODEL.SEM_SEG_HEAD.LEAKY_RELU_SLOPE = 0.01

    # ---------------------------------------------------------------------------------------
    # Context modules' own nodes: MODEL.OCR (paper sections 3.2-3.3), the context-head zoo OCR
    # is compared with (paper sec. 4.3, Tables 2-4: MODEL.PPM, MODEL.ASPP,
    # MODEL.SELF_ATTENTION, MODEL.DOUBLE_ATTENTION, MODEL.DANET, MODEL.CC_ATTENTION) and the
    # coarse-to-fine baselines (MODEL.COARSE_TO_FINE). Each node, its defaults and what every
    # key does are declared by the module's class in panoptic_ocr/modeling/contexts/
    # (ContextModule.CONFIG_NODE, CONFIG_DEFAULTS); the node of every class in
    # CONTEXT_REGISTRY is added here, once. See docs/context_heads.md.
    # ---------------------------------------------------------------------------------------
    for node, defaults in context_config_nodes().items():
        # Adding again (a second call) is fine; replacing another node (MODEL.RESNETS) is not.
        existing = cfg.MODEL.get(node)
        same_node = isinstance(existing, CN) and set(existing) == set(defaults)
        if existing is not None and not same_node:
            raise ValueError(
                f"MODEL.{node}, the CONFIG_NODE of a context module, is already a different "
                "config key: rename the module's CONFIG_NODE"
            )
        setattr(cfg.MODEL, node, CN(defaults))

    # ---------------------------------------------------------------------------------------
    # Backbones (docs/backbones.md). Dilated ResNets read MODEL.RESNETS; both backbones
    # below also honour MODEL.BACKBONE.FREEZE_AT (0: train everything).
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.HRNET = CN()  # build_hrnet_backbone (HRNetV2)
    # Width C of the first branch: HRNetV2-W18/W32/W48 have branches C, 2C, 4C, 8C (W48: a
    # 720-channel "concat").
    cfg.MODEL.HRNET.WIDTH = 48
    # Normalisation of every conv: "BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN" (get_norm).
    cfg.MODEL.HRNET.NORM = "BN"
    # Outputs: "concat" (branches upsampled to stride 4, concatenated) and/or "branch1".."branch4".
    cfg.MODEL.HRNET.OUT_FEATURES = ["concat"]
    # align_corners of HRNet's bilinear upsamplings (HRNet-OCR code: True; mmseg: False).
    cfg.MODEL.HRNET.ALIGN_CORNERS = False
    # Dilated ResNets of the released OCR models (build_dilated_resnet_backbone): the first block
    # of a dilated stage uses half the stage's dilation (openseg's _nostride_dilate, mmseg's
    # contract_dilation=True); False: every block of the stage uses it (Detectron2's DeepLab).
    cfg.MODEL.RESNETS.CONTRACT_DILATION = False
    # Stem max-pool with ceil_mode (openseg's ResNets); False: floor, as Detectron2's stems.
    cfg.MODEL.RESNETS.STEM_POOL_CEIL_MODE = False

    cfg.MODEL.MOBILENETV2 = CN()  # build_mobilenetv2_backbone (torchvision's MobileNetV2, dilated)
    # Outputs among "stage1" (16 ch), "stage2" (24), "stage3" (32), "stage4" (96), "stage5" (320).
    cfg.MODEL.MOBILENETV2.OUT_FEATURES = ["stage4", "stage5"]
    # 8 (OCR paper, supp. D), 16 or 32: strides beyond it become dilated depthwise convs.
    cfg.MODEL.MOBILENETV2.OUTPUT_STRIDE = 8
    # Normalisation of every conv: "BN" (torchvision's), "SyncBN", "naiveSyncBN", "FrozenBN".
    cfg.MODEL.MOBILENETV2.NORM = "BN"

    # ---------------------------------------------------------------------------------------
    # Data
    # ---------------------------------------------------------------------------------------
    # Dataset mapper of the training loader: "semantic" (image + sem_seg label),
    # "detectron2" (Detectron2's DatasetMapper, for Panoptic-FPN's instance + semantic data),
    # "panoptic_instances" (the same, with the instances read from a record's panoptic PNG: the
    # Cityscapes panoptic datasets) or "segfix" (the semantic mapper plus SegFix's targets).
    cfg.INPUT.DATASET_MAPPER_NAME = "semantic"
    # Random rescaling of training images by a factor in [MIN, MAX] (paper: 0.5-2.0) before
    # the crop of INPUT.CROP.SIZE; (1.0, 1.0) disables it.
    cfg.INPUT.RANDOM_SCALE = (1.0, 1.0)
    # Additive brightness jitter: a value drawn from [-B, B] is added to every pixel
    # (paper: 10). 0 disables it.
    cfg.INPUT.BRIGHTNESS_DELTA = 0.0

    # ---------------------------------------------------------------------------------------
    # OCR variants, baselines and inference (docs/ocr_variants.md). Heads: the Table-1 ablations
    # OCRNoRegionSupervisionHead, OCRDoubleAttentionRelationHead, OCRACFRelationHead; the oracle
    # OCRGroundTruthHead; the coarse-to-fine baselines CoarseOnlyHead, FineOnlyHead,
    # LabelEnsembleHead, LabelRefinementHead. Their widths come from MODEL.OCR/SEM_SEG_HEAD,
    # LabelEnsembleHead's weight from MODEL.COARSE_TO_FINE (modeling/contexts/coarse_to_fine.py).
    # ---------------------------------------------------------------------------------------
    # Test loader also reads sem_seg labels (needed by OCRGroundTruthHead at inference).
    cfg.INPUT.LOAD_SEM_SEG_IN_TEST = False
    # Weight files (docs/trust.md, README "Security"). False: .pth files are read with
    # torch.load(weights_only=True) and .pkl files by a restricted unpickler (dicts, lists,
    # numbers, strings, numpy arrays); a file holding anything else is refused. True reads any
    # pickle, which can run code from the file: only for files whose source you trust.
    cfg.MODEL.WEIGHTS_TRUSTED = False
    # Tools that produce a result (--eval-only, the demo, the exports, object regions) refuse an
    # empty MODEL.WEIGHTS and weights that do not fill the model (missing, unexpected or
    # misshaped tensors, NaN/inf values). True loads what fits and only warns (training always
    # does, as Detectron2's fine-tuning).
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    # Inference autocast dtype: "float32", "bfloat16", "float16", "auto" (bf16 CPU, fp16 CUDA).
    cfg.MODEL.INFERENCE_DTYPE = "float32"
    # Inference in channels_last memory format (oneDNN's fast layout; most of bf16's CPU gain).
    cfg.MODEL.INFERENCE_CHANNELS_LAST = False
    # Training in channels_last memory format (the model's weights; tools/benchmark_amp.py
    # --channels-last measures it: slower than the default layout on the CPUs measured so far).
    cfg.MODEL.TRAIN_CHANNELS_LAST = False
    # Trainer.test evaluates a copy with BatchNorm folded into the convs (training untouched).
    cfg.TEST.FOLD_BATCHNORM = False
    # torch.compile of the evaluated semantic segmentor's backbone and head (docs/inference.md):
    # minutes of compilation on the first images (Inductor's on-disk cache makes later runs on
    # this machine start in seconds); pays on long evaluations, see docs/benchmarks.md.
    cfg.TEST.COMPILE = CN()
    cfg.TEST.COMPILE.ENABLED = False
    # torch.compile's mode: "default", "reduce-overhead", "max-autotune",
    # "max-autotune-no-cudagraphs".
    cfg.TEST.COMPILE.MODE = "default"

    # ---------------------------------------------------------------------------------------
    # Test-time inference: sliding window and augmentation (docs/inference.md)
    # ---------------------------------------------------------------------------------------
    cfg.TEST.SLIDING_WINDOW = CN()
    # Segment each test image in overlapping windows (bounded memory on large images).
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    # Window (h, w) in pixels of the test input; images smaller than it are padded.
    cfg.TEST.SLIDING_WINDOW.SIZE = (769, 769)
    # Step (h, w) between windows; at most SIZE. Overlapping logits are averaged.
    cfg.TEST.SLIDING_WINDOW.STRIDE = (513, 513)
    # Windows run together in one batch.
    cfg.TEST.SLIDING_WINDOW.BATCH_SIZE = 1
    # TEST.AUG.ENABLED (Detectron2's key) adds a second evaluation, reported as "<task>_TTA",
    # averaging class probabilities over these scale factors of the test image ...
    cfg.TEST.AUG.SCALES = (1.0,)
    # ... and, with TEST.AUG.FLIP (Detectron2's key, default True), over horizontal flips.
    # Class pairs swapped in flipped predictions (LIP: [[14, 15], [16, 17], [18, 19]]).
    cfg.TEST.AUG.FLIP_CHANNEL_PAIRS = []

    # ---------------------------------------------------------------------------------------
    # Hierarchical multi-scale attention (META_ARCHITECTURE "HMSASemanticSegmentor";
    # docs/multi_scale_attention.md): the segmentor runs at several image scales and a learned
    # per-pixel attention, read from the head's final representation, combines them.
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.HMSA = CN()
    # Image scales of training (NVIDIA: 0.5 and 1.0) and of inference (NVIDIA's Cityscapes
    # evaluation: 0.5, 1.0, 2.0; Mapillary: 0.25, 0.5, 1.0, 2.0). Each must contain 1.0: the
    # combined prediction has scale 1.0's size.
    cfg.MODEL.HMSA.TRAIN_SCALES = (0.5, 1.0)
    cfg.MODEL.HMSA.TEST_SCALES = (0.5, 1.0, 2.0)
    # Attention head: ATTENTION_NUM_CONVS 3x3 conv-norm-ReLU layers of ATTENTION_CHANNELS, a 1x1
    # conv to one channel (no bias), sigmoid (NVIDIA: 2 x 256, BN). ATTENTION_NORM "" uses
    # MODEL.SEM_SEG_HEAD.NORM.
    cfg.MODEL.HMSA.ATTENTION_CHANNELS = 256
    cfg.MODEL.HMSA.ATTENTION_NUM_CONVS = 2
    cfg.MODEL.HMSA.ATTENTION_NORM = ""
    # Weight w of the per-scale terms: w x cross-entropy of each training scale's own logits
    # (resized to scale 1.0), added to the loss of the combined logits (NVIDIA's
    # SUPERVISED_MSCALE_WT: 0 by default, 0.05 in its Cityscapes recipes).
    cfg.MODEL.HMSA.SUPERVISED_SCALE_WEIGHT = 0.0

    # ---------------------------------------------------------------------------------------
    # SegFix (META_ARCHITECTURE "SegFixModel"): boundary and direction prediction, whose offsets
    # refine another model's segmentation (panoptic_ocr/segfix/, docs/segfix.md).
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.SEGFIX = CN()
    # Backbone features resized to the first one's resolution and concatenated (HRNetV2:
    # "concat", its four branches at stride 4; a dilated ResNet: e.g. ["res2", "res5"]).
    cfg.MODEL.SEGFIX.IN_FEATURES = ["concat"]
    # Width and norm of the 1x1 conv of the boundary and direction heads (openseg: 256, BN).
    cfg.MODEL.SEGFIX.MID_CHANNELS = 256
    cfg.MODEL.SEGFIX.NORM = "BN"
    # Activation after that norm: "relu", or "leaky_relu" (slope 0.01: openseg's InPlaceABN
    # models, whose released checkpoints need it to be exact).
    cfg.MODEL.SEGFIX.ACTIVATION = "relu"
    # Boundary pixels: within this Euclidean distance of their class region's border (openseg: 5).
    cfg.MODEL.SEGFIX.MAX_DISTANCE = 5
    # Where the "segfix" mapper gets the targets: "online" (computed on every augmented crop
    # in the loader's workers) or "cached" (the full labels' targets, written once by
    # datasets/prepare_segfix_targets.py and augmented with the label, as openseg does; several
    # times cheaper on large labels, see docs/segfix.md). TARGETS_DIR: the cache's root ("" =
    # $DETECTRON2_DATASETS/segfix_targets), mirroring the labels' paths under that root.
    cfg.MODEL.SEGFIX.TARGETS = "online"
    cfg.MODEL.SEGFIX.TARGETS_DIR = ""
    # Pixels of the direction loss: "ground_truth" (the ground truth's boundary) or
    # "ground_truth_and_predicted" (those also predicted as boundary, as openseg masks it).
    cfg.MODEL.SEGFIX.DIRECTION_PIXELS = "ground_truth"
    cfg.MODEL.SEGFIX.BOUNDARY_LOSS_WEIGHT = 1.0
    cfg.MODEL.SEGFIX.DIRECTION_LOSS_WEIGHT = 1.0
    # align_corners of the feature fusion and of the upsampling of its logits (openseg: True).
    cfg.MODEL.SEGFIX.ALIGN_CORNERS = True
    # Refinement of another semantic model by a trained SegFix model: its checkpoint and the
    # config it was trained with ("" = no refinement). The inference builder then refines the
    # model's sem_seg logits before evaluation, the demo and submission writing: at every pixel
    # whose boundary probability exceeds THRESHOLD, the logits of the pixel SCALE steps along the
    # predicted direction (openseg: 2, 0.5).
    cfg.MODEL.SEGFIX.WEIGHTS = ""
    cfg.MODEL.SEGFIX.CONFIG = ""
    cfg.MODEL.SEGFIX.SCALE = 2
    cfg.MODEL.SEGFIX.THRESHOLD = 0.5

    # ---------------------------------------------------------------------------------------
    # Outputs
    # ---------------------------------------------------------------------------------------
    cfg.VIS = CN()
    # After evaluation, save this many prediction overlays (PNG) of the first test dataset
    # under OUTPUT_DIR/vis/. 0 saves none.
    cfg.VIS.NUM_IMAGES = 0
    # Largest test input in pixels (after TTA scale, resize, padding), checked at load and run
    # time (config_checks.py).
    cfg.INPUT.MAX_INPUT_PIXELS = 8192 * 8192


def setup_cfg(config_file: str, opts: Sequence[str] = (), *, freeze: bool = True) -> CN:
    """The project's config as ``train_net.py`` and every tool build it.

    Detectron2's defaults, :func:`add_ocr_config`, ``config_file``, then ``opts`` (KEY VALUE
    pairs, last), adapted to this machine by
    :func:`adapt_config_to_device` (CUDA -> CPU where there is no
    CUDA; SyncBN -> naiveSyncBN on CPU).

    Args:
        config_file: YAML config file.
        opts: ``[KEY, VALUE, KEY, VALUE, ...]`` overrides, as on Detectron2's command lines.
        freeze: return the config frozen (default) or mutable.
    Raises:
        ValueError: ``opts`` has an odd length (yacs' own errors name a bad key or value), or a
            value cannot work (:func:`panoptic_ocr.config_checks.check_config_values`).
    """
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"config opts must be KEY VALUE pairs, got an odd number: {opts}")
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    adapt_config_to_device(cfg)
    check_config_values(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def norm_keys(cfg: CN, prefix: str = "") -> Iterator[Tuple[CN, str, str]]:
    """``(node, key, full key)`` of every string ``*.NORM`` key of ``cfg``."""
    for key, value in cfg.items():
        if isinstance(value, CN):
            yield from norm_keys(value, f"{prefix}{key}.")
        elif key == "NORM" and isinstance(value, str):
            yield cfg, key, f"{prefix}{key}"


def adapt_config_to_device(cfg: CN) -> CN:
    """Make ``cfg`` runnable on this machine, logging every change.

    - ``MODEL.DEVICE`` "cuda" on a machine without CUDA becomes "cpu".
    - On CPU, every ``*.NORM`` "SyncBN" becomes "naiveSyncBN": PyTorch's SyncBatchNorm only
      runs on CUDA, while Detectron2's NaiveSyncBatchNorm all-reduces through any backend
      (gloo included) and equals BN in a single process.
    """
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(
            "MODEL.DEVICE is %r but CUDA is not available: using 'cpu'", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu":
        for node, key, full_key in norm_keys(cfg):
            if node[key] == "SyncBN":
                logger.info("%s: SyncBN needs CUDA; using naiveSyncBN on CPU", full_key)
                node[key] = "naiveSyncBN"
    if was_frozen:
        cfg.freeze()
    return cfg
