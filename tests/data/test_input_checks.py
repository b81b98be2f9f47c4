"""Inputs are read rightly (16-bit images, labels of any integer type), and config values that
cannot work are refused when the config is loaded; oversized test inputs before allocation."""

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from panoptic_ocr import setup_cfg
from panoptic_ocr.config_checks import check_input_pixels
from panoptic_ocr.data import SemanticDatasetMapper
from panoptic_ocr.data.datasets import register_sem_seg_folder
from panoptic_ocr.data.image_files import ImageModeError, read_image
from panoptic_ocr.engine import Trainer
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
QUICKSTART_PATH = str(REPO_ROOT / QUICKSTART)
SMALL = [
    "MODEL.OCR.MID_CHANNELS",
    "32",
    "MODEL.OCR.KEY_CHANNELS",
    "16",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "32",
    "INPUT.CROP.SIZE",
    "(32, 32)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
]
TOY_CLASSES = ["circle", "rectangle", "triangle", "sky", "ground", "water", "grass"]


def _grey16(path, values: np.ndarray) -> str:
    Image.fromarray(values.astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    return str(path)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 128, 129, 257], [1000, 32768, 65407, 65535]])
    path = _grey16(tmp_path / "grey16.png", values)
    expected = np.array([[0, 0, 1, 1], [4, 128, 255, 255]], np.uint8)  # round(v / 257)
    assert np.array_equal(np.round(values / 257), expected)
    rgb = read_image(path, format="RGB")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    assert np.array_equal(
        rgb, np.repeat(expected[..., None], 3, axis=2)
    )  # Detectron2's: 255 but for 0
    assert np.array_equal(read_image(path, format="BGR")[..., 0], expected)
    assert np.array_equal(read_image(path, format="L")[..., 0], expected)


def test_16bit_image_through_the_mapper_and_the_demo_reader(tmp_path):
    values = np.tile(np.linspace(0, 65535, 40), (30, 1))
    path = _grey16(tmp_path / "grey16.png", values)
    label = tmp_path / "label.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(label)
    cfg = make_cfg(
        QUICKSTART,
        [
            "INPUT.CROP.ENABLED",
            "False",
            "INPUT.RANDOM_SCALE",
            "(1.0, 1.0)",
            "INPUT.RANDOM_FLIP",
            "none",
            "INPUT.BRIGHTNESS_DELTA",
            "0.0",
        ],
    )
    out = SemanticDatasetMapper(cfg, is_train=True)(
        {"file_name": path, "sem_seg_file_name": str(label)}
    )
    expected = np.rint(values / 257).astype(np.uint8)
    assert np.array_equal(out["image"][0].numpy(), expected)
    assert out["image"].float().mean() < 200  # Detectron2's reader gave an all-white (255) image


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: read as 10 wide, 20 high
    image.save(path, exif=exif)
    assert read_image(str(path), format="RGB").shape == (20, 10, 3)


def test_32bit_and_float_images_are_refused_naming_file_and_mode(tmp_path):
    int32 = tmp_path / "deep.tif"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(int32)
    with pytest.raises(ImageModeError) as e:
        read_image(str(int32), format="RGB")
    assert str(e.value) == (
        f"Image file '{int32}' is a 32-bit integer image (PIL mode 'I') with values in [0, "
        "70000], beyond "
        "16 bits (0..65535); only 8-bit and 16-bit images can be read: convert it to an 8-bit (or "
        "16-bit) PNG"
    )
    float32 = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5]], np.float32)).save(float32)
    with pytest.raises(ImageModeError) as e:
        read_image(str(float32), format="RGB")
    assert str(e.value) == (
        f"Image file '{float32}' is a float image (PIL mode 'F'); only 8-bit and 16-bit integer "
        "images can "
        "be read: convert it to an 8-bit (or 16-bit) PNG or JPEG"
    )
    within = tmp_path / "int_within_16bit.tif"  # mode "I" that holds 16-bit values: scaled
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(within)
    assert read_image(str(within), format="L")[..., 0].tolist() == [[0, 255]]


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(OSError, match=rf"^Cannot read image file '{bad}': "):
        read_image(str(bad), format="RGB")


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def _mapper(num_classes=7):
    cfg = make_cfg(QUICKSTART, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(num_classes)])
    return SemanticDatasetMapper(cfg, is_train=True)


def _pair(tmp_path, label: np.ndarray, suffix=".png", stem="label"):
    image = tmp_path / "img.jpg"
    Image.fromarray(np.full(label.shape + (3,), 100, np.uint8)).save(image)
    label_file = tmp_path / f"{stem}{suffix}"
    Image.fromarray(label).save(label_file)
    return {"file_name": str(image), "sem_seg_file_name": str(label_file)}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_integer_labels_pass_the_training_augmentations(tmp_path, dtype):
    label = np.zeros((40, 48), dtype)
    label[:, 24:] = 6
    label[:5] = 255
    record = _pair(tmp_path, label, suffix=".tif" if dtype == np.int32 else ".png")
    torch.manual_seed(0)
    np.random.seed(0)
    out = _mapper()(record)  # random scale 0.75-1.25 (a resize), crop, flip
    assert out["sem_seg"].dtype == torch.int64
    assert set(out["sem_seg"].unique().tolist()) <= {0, 6, 255} and 6 in out["sem_seg"]


def test_uint16_label_beyond_255_keeps_its_values(tmp_path):
    label = np.full((40, 48), 299, np.uint16)  # a 300-class dataset
    label[:, :10] = 255
    out = _mapper(num_classes=300)(_pair(tmp_path, label))
    assert set(out["sem_seg"].unique().tolist()) <= {299, 255} and 299 in out["sem_seg"]


def test_label_values_beyond_float32s_exact_integers_are_refused(tmp_path):
    label = np.full((8, 8), 2**24, np.int32)  # unchecked values (num_classes None)
    record = _pair(tmp_path, label, suffix=".tif")
    mapper = SemanticDatasetMapper(
        is_train=True, augmentations=[], image_format="RGB", ignore_label=255, num_classes=None
    )
    with pytest.raises(ValueError) as e:
        mapper(record)
    assert str(e.value) == (
        f"Label file '{record['sem_seg_file_name']}' holds values beyond +-2**24 ([16777216, "
        "16777216]), which the "
        "augmentations cannot carry"
    )
    label[:] = 2**24 - 1
    record = _pair(tmp_path, label, suffix=".tif")
    assert mapper(record)["sem_seg"].unique().tolist() == [2**24 - 1]


def test_float_label_is_refused_with_the_files_name(tmp_path):
    record = _pair(tmp_path, np.zeros((40, 48), np.float32), suffix=".tif")
    with pytest.raises(ValueError) as e:
        _mapper()(record)
    assert str(e.value) == (
        f"Label file '{record['sem_seg_file_name']}' holds float32 values; labels must be integer "
        "class ids "
        "(an 8, 16 or 32-bit integer PNG or TIFF)"
    )


def test_uint16_labels_train_one_step_and_evaluate(tmp_path):
    """A 16-bit label dataset: one training step and an evaluation (was a torch error naming no
    file)."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            images / f"s{i}.jpg"
        )
        label = np.full((40, 48), 3, np.uint16)
        label[20:] = 4
        Image.fromarray(label).save(labels / f"s{i}.png")
        assert Image.open(labels / f"s{i}.png").mode == "I;16"
    name = "test_input_checks_uint16"
    register_sem_seg_folder(name, str(images), str(labels), TOY_CLASSES)
    try:
        cfg = make_cfg(
            QUICKSTART,
            SMALL
            + [
                "OUTPUT_DIR",
                str(tmp_path / "out"),
                "SOLVER.MAX_ITER",
                "1",
                "DATASETS.TRAIN",
                f'("{name}",)',
                "DATASETS.TEST",
                f'("{name}",)',
            ],
        )
        cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        assert trainer.iter == 1
        assert np.isfinite(trainer.storage.history("total_loss").latest())
        results = Trainer.test(cfg, trainer.model)
        assert results["sem_seg"]["num_images"] == 2 and np.isfinite(results["sem_seg"]["pACC"])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ---------------------------------------------------------------------------------------------
# Config values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["INPUT.CROP.SIZE", "(0, 0)"],
            "INPUT.CROP.SIZE is [0, 0]: every entry must be a number > 0, got 0",
        ),
        (["TEST.AUG.SCALES", "()"], "TEST.AUG.SCALES is []: it must not be empty"),
        (
            ["TEST.AUG.SCALES", "(0.0,)"],
            "TEST.AUG.SCALES is [0.0]: every entry must be a number > 0, got 0.0",
        ),
        (
            ["TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(1.0, -0.5)"],
            "TEST.AUG.SCALES is [1.0, -0.5]: every entry must be a number > 0, got -0.5",
        ),
        (
            ["INPUT.MIN_SIZE_TRAIN", "(512, -1)"],
            "INPUT.MIN_SIZE_TRAIN is [512, -1]: sizes must be >= 0 (0 disables the resize), got -1",
        ),
        (
            ["INPUT.MIN_SIZE_TEST", "-1"],
            "INPUT.MIN_SIZE_TEST is -1: sizes must be >= 0 (0 disables the resize), got -1",
        ),
        (
            ["INPUT.MAX_SIZE_TEST", "-1"],
            "INPUT.MAX_SIZE_TEST is -1: sizes must be >= 0 (0 disables the resize), got -1",
        ),
        (["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER is 0: it must be > 0"),
        (["SOLVER.IMS_PER_BATCH", "-2"], "SOLVER.IMS_PER_BATCH is -2: it must be > 0"),
        (
            ["TEST.SLIDING_WINDOW.SIZE", "(0, 769)"],
            "TEST.SLIDING_WINDOW.SIZE is [0, 769]: every entry must be a number > 0, got 0",
        ),
        (
            ["TEST.SLIDING_WINDOW.STRIDE", "(513, -513)"],
            "TEST.SLIDING_WINDOW.STRIDE is [513, -513]: every entry must be a number > 0, got -513",
        ),
        (
            ["INPUT.MAX_INPUT_PIXELS", "0"],
            "INPUT.MAX_INPUT_PIXELS is 0: it must be a pixel count > 0 (default 8192 * 8192 = "
            "67108864)",
        ),
        (
            ["TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(1.0, 40.0)"],
            "INPUT.MAX_SIZE_TEST 1333 x max(TEST.AUG.SCALES) 40 lets a test input reach "
            "53320x53320 = 2843022400 "
            "pixels, more than INPUT.MAX_INPUT_PIXELS 67108864: lower TEST.AUG.SCALES or "
            "INPUT.MAX_SIZE_TEST, or "
            "raise INPUT.MAX_INPUT_PIXELS if the memory is there",
        ),
    ],
)
def test_config_values_that_cannot_work_are_refused_at_load(opts, message):
    with pytest.raises(ValueError) as e:
        setup_cfg(QUICKSTART_PATH, opts)
    assert str(e.value) == message


def test_config_values_that_work_pass():
    setup_cfg(
        QUICKSTART_PATH, ["INPUT.CROP.ENABLED", "False", "INPUT.CROP.SIZE", "(0, 0)"]
    )  # unused crop
    setup_cfg(
        QUICKSTART_PATH, ["TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(0.5, 1.0, 6.0)"]
    )  # 7998**2
    setup_cfg(
        QUICKSTART_PATH, ["TEST.AUG.SCALES", "(40.0,)"]
    )  # TTA off: the test input stays 1333 wide
    setup_cfg(
        QUICKSTART_PATH,
        ["INPUT.MAX_SIZE_TEST", "0", "TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(40.0,)"],
    )


def test_every_committed_config_passes_the_checks():
    configs = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
    assert len(configs) > 100
    for path in configs:
        setup_cfg(str(path))


# ---------------------------------------------------------------------------------------------
# Test inputs too large for INPUT.MAX_INPUT_PIXELS
# ---------------------------------------------------------------------------------------------


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, inputs):
        self.calls.append(tuple(inputs[0]["image"].shape))
        return [{"sem_seg": torch.zeros(7, x["height"], x["width"])} for x in inputs]


def test_tta_scale_beyond_the_pixel_limit_is_refused_before_any_allocation():
    model = _Recorder()
    tta = SemanticSegmentorWithTTA(
        model, scales=[1.0, 40.0], flip=True, num_classes=7, max_input_pixels=8192 * 8192
    )
    image = torch.zeros(3, 300, 400, dtype=torch.uint8)
    with pytest.raises(ValueError) as e:
        tta([{"image": image, "file_name": "/data/val/a.jpg", "height": 300, "width": 400}])
    assert str(e.value) == (
        "Image '/data/val/a.jpg' of 400x300 scaled by 40 (TEST.AUG.SCALES) would be 16000x12000 "
        "(WxH) = "
        "192000000 pixels, more than INPUT.MAX_INPUT_PIXELS 67108864; nothing was allocated. "
        "Lower the scale "
        "(TEST.AUG.SCALES, INPUT.MIN_SIZE_TEST/MAX_SIZE_TEST) or raise INPUT.MAX_INPUT_PIXELS if "
        "the memory is there"
    )
    assert model.calls == []  # not even the 1.0 scale ran
    with pytest.raises(
        ValueError, match=r"^An input image \(no file_name\) of 400x300 scaled by 40"
    ):
        tta([{"image": image}])
    tta.with_model(model)  # the limit travels with the augmentation
    assert tta.with_model(model).max_input_pixels == 8192 * 8192
    small = SemanticSegmentorWithTTA(
        model, scales=[1.0, 2.0], flip=False, num_classes=7, max_input_pixels=480_000
    )
    small(
        [{"image": image, "height": 300, "width": 400}]
    )  # 800x600 = 480000: at the limit, allowed
    assert model.calls == [(3, 300, 400), (3, 600, 800)]


_SMALL_CFG = make_cfg(QUICKSTART, SMALL + ["MODEL.WEIGHTS", "", "INPUT.MAX_INPUT_PIXELS", "4096"])


@pytest.fixture(scope="module")
def small_model():
    from detectron2.modeling import build_model

    return build_model(_SMALL_CFG).eval()


def test_segmentor_refuses_oversized_padded_or_resized_inputs(small_model):
    assert small_model.max_input_pixels == 4096 and small_model.size_divisibility == 16
    with torch.no_grad():
        out = small_model(
            [{"image": torch.zeros(3, 60, 60, dtype=torch.uint8), "file_name": "ok.jpg"}]
        )
        assert out[0]["sem_seg"].shape == (7, 60, 60)  # padded to 64x64 = 4096: allowed
        with pytest.raises(ValueError) as e:
            small_model(
                [{"image": torch.zeros(3, 65, 60, dtype=torch.uint8), "file_name": "/d/tall.jpg"}]
            )
        assert (
            SemanticSegmentorWithTTA.from_config(_SMALL_CFG, small_model).max_input_pixels == 4096
        )
        assert str(e.value).startswith(
            "Image '/d/tall.jpg' of 60x65 padded to a multiple of 16 would be 64x80 (WxH) = 5120 "
            "pixels, more "
            "than INPUT.MAX_INPUT_PIXELS 4096; nothing was allocated."
        )
        with pytest.raises(
            ValueError,
            match=r"^Image 'small.jpg' of 32x32 resized to its output height x width "
            r"would be 100x100 \(WxH\) = 10000 pixels, more than INPUT.MAX_INPUT_PIXELS 4096",
        ):
            small_model(
                [
                    {
                        "image": torch.zeros(3, 32, 32, dtype=torch.uint8),
                        "file_name": "small.jpg",
                        "height": 100,
                        "width": 100,
                    }
                ]
            )
        with pytest.raises(
            ValueError,
            match=r"^Image 'w.jpg' of 32x32 padded to the sliding window 80x80 would be "
            r"80x80 \(WxH\) = 6400 pixels",
        ):
            small_model(
                [{"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "file_name": "w.jpg"}],
                sliding_window=((80, 80), (40, 40), 1),
            )
        assert small_model.sliding_window is None  # a call's window leaves the model as built


def test_check_input_pixels_without_a_limit_checks_nothing():
    check_input_pixels(10**6, 10**6, None)
    with pytest.raises(ValueError, match="more than INPUT.MAX_INPUT_PIXELS 1;"):
        check_input_pixels(1, 2, 1)
