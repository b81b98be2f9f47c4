"""Config keys of panoptic_ocr. Every key has a default and says what it does."""
from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config


def add_ocr_config(cfg: CN) -> None:
    """Add panoptic_ocr's keys (and DeepLab's, which it builds on) to a Detectron2 config."""
    add_deeplab_config(cfg)
    # DeepLab's default is its "hard_pixel_mining" loss; the OCR paper trains with plain CE.
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    # OCRSemanticSegmentor pads each batch to a multiple of this; -1 means the largest
    # backbone output stride, so upsampled logits align exactly with the input pixels.
    cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY = -1

    # ---------------------------------------------------------------------------------------
    # Context heads (OCR, PPM, ASPP, ...): shared keys under MODEL.SEM_SEG_HEAD
    # ---------------------------------------------------------------------------------------
    # The context module reads MODEL.SEM_SEG_HEAD.IN_FEATURES[0]: stage 4 of a dilated ResNet
    # ("res5") or HRNet's final representation.
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res5"]
    # Feature of the auxiliary branch (OCR: the soft object regions; other heads: deep
    # supervision): stage 3 of a dilated ResNet ("res4"); with HRNet the same as IN_FEATURES.
    # "" disables the branch (not allowed for OCR, whose regions come from it).
    cfg.MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE = "res4"
    # Hidden channels of the auxiliary branch (3x3 conv-norm-ReLU, Dropout2d, 1x1 classifier);
    # 0 makes it a single 1x1 classifier, the "linear function" of the paper's section 3.3.
    cfg.MODEL.SEM_SEG_HEAD.AUX_CHANNELS = 512
    # Dropout2d rate inside the auxiliary branch (authors' code: 0.05).
    cfg.MODEL.SEM_SEG_HEAD.AUX_DROPOUT = 0.05
    # Weight of the auxiliary cross-entropy (paper: 0.4).
    cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT = 0.4

    # ---------------------------------------------------------------------------------------
    # OCR module (paper sections 3.2-3.3). Channel numbers default to the paper's.
    # ---------------------------------------------------------------------------------------
    cfg.MODEL.OCR = CN()
    # Channels of the pixel representation x (after a 3x3 conv) and of g's output (paper: 512).
    cfg.MODEL.OCR.MID_CHANNELS = 512
    # Channels of phi, psi and delta (paper: 256); relations are scaled by KEY_CHANNELS**-0.5.
    cfg.MODEL.OCR.KEY_CHANNELS = 256
    # Number of 1x1 conv-BN-ReLU layers in phi and in psi: 1 as in the paper's text and its
    # Table 4 count, 2 (default) as in the authors' released code.
    cfg.MODEL.OCR.PROJ_LAYERS = 2
    # Dropout2d rate after g (authors' code: 0.05).
    cfg.MODEL.OCR.DROPOUT = 0.05

    # ---------------------------------------------------------------------------------------
    # Data
    # ---------------------------------------------------------------------------------------
    # Dataset mapper of the training loader: "semantic" (image + sem_seg label) or
    # "detectron2" (Detectron2's DatasetMapper, for Panoptic-FPN's instance + semantic data).
    cfg.INPUT.DATASET_MAPPER_NAME = "semantic"
    # Random rescaling of training images by a factor in [MIN, MAX] (paper: 0.5-2.0) before
    # the crop of INPUT.CROP.SIZE; (1.0, 1.0) disables it.
    cfg.INPUT.RANDOM_SCALE = (1.0, 1.0)
    # Additive brightness jitter: a value drawn from [-B, B] is added to every pixel
    # (paper: 10). 0 disables it.
    cfg.INPUT.BRIGHTNESS_DELTA = 0.0

    # ---------------------------------------------------------------------------------------
    # Outputs
    # ---------------------------------------------------------------------------------------
    cfg.VIS = CN()
    # After evaluation, save this many prediction overlays (PNG) of the first test dataset
    # under OUTPUT_DIR/vis/. 0 saves none.
    cfg.VIS.NUM_IMAGES = 0
