"""Exported files evaluated on a dataset (``tools/evaluate_exported.py``): ONNX through
onnxruntime and OpenVINO, and OpenVINO IR, score what the PyTorch model scores through the same
loader and evaluators; files that do not stand for the config's fully loaded model are refused
before any inference; OpenVINO IR export writes its two files atomically; the demo runs an
exported file (``--exported``) as PyTorch runs the model."""

import os

import numpy as np
import pytest
import torch
from conftest import (
    QUICKSTART,
    load_script,
    load_tool,
    make_cfg,
    randomise_batchnorm,
    register_first_images,
    save_run_weights,
    tiny_run_folder,
)
from PIL import Image

from panoptic_ocr.engine import Trainer
from panoptic_ocr.engine.exported_evaluation import evaluate_exported
from panoptic_ocr.export import (
    ExportedFileError,
    check_export,
    check_images,
    export_model,
    load_exported,
    read_metadata,
)
from panoptic_ocr.utils.safe_write import OutputExistsError

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

DATASET = register_first_images("exported_eval_toy_val_4", count=4)


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A run folder whose weights fill the quickstart model (tiny OCR widths, randomised BN so
    that predictions vary over the image), and its ONNX and OpenVINO IR exports."""
    folder = tmp_path_factory.mktemp("exported")
    run, model = tiny_run_folder(folder / "run", QUICKSTART, seed=3)
    randomise_batchnorm(model, seed=3)
    save_run_weights(run, model)
    cfg = _cfg(run)
    onnx_path, ir_path = str(folder / "model.onnx"), str(folder / "model.xml")
    exported = export_model(cfg, onnx_path, "onnx")
    export_model(cfg, ir_path, "openvino", model=exported)
    return run, exported, onnx_path, ir_path


def _cfg(run: str, opts=()):
    cfg = make_cfg(os.path.join(run, "config.yaml"))
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(run, "model_final.pth")
    cfg.DATASETS.TEST = (DATASET,)
    cfg.OUTPUT_DIR = os.path.join(run, "eval")
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def test_openvino_ir_matches_pytorch_and_records_metadata(trained_like):
    run, model, onnx_path, ir_path = trained_like
    assert os.path.isfile(ir_path[: -len(".xml")] + ".bin")
    meta = read_metadata(ir_path)
    assert meta["format"] == "openvino" and meta["weights_complete"] is True
    assert meta["weights"] == os.path.join(run, "model_final.pth")
    checks = check_export(ir_path, model, check_images([], "RGB"))
    assert all(c.max_abs_diff <= 1e-4 * max(1, c.max_abs_logit) for c in checks), checks
    assert all(c.agreement >= 0.999 for c in checks), checks
    # OpenVINO also runs the ONNX file, and agrees with onnxruntime on it
    image = torch.rand(1, 3, 70, 90).numpy() * 255
    by_ort = load_exported(onnx_path)[0](image)
    by_ov = load_exported(onnx_path, "openvino")[0](image)
    assert by_ort.shape == (1, 7, 70, 90)
    assert abs(by_ort - by_ov).max() <= 1e-4 * max(1.0, abs(by_ort).max())
    assert abs(by_ort - load_exported(onnx_path)[0](image[..., ::-1].copy())).max() > 1e-4


def test_exported_files_score_what_pytorch_scores(trained_like):
    run, _, onnx_path, ir_path = trained_like
    cfg = _cfg(run)
    from panoptic_ocr.checkpoint.checkpointer import load_inference_weights

    model = Trainer.build_model(cfg)
    load_inference_weights(model, cfg.MODEL.WEIGHTS)
    reference = Trainer.test(cfg, model)["sem_seg"]
    assert 0 < reference["mIoU"] < 100  # varied predictions: the comparison means something
    for path, runtime in [(onnx_path, None), (onnx_path, "openvino"), (ir_path, None)]:
        results = evaluate_exported(cfg, path, runtime)["sem_seg"]
        for key in ("mIoU", "fwIoU", "mACC", "pACC"):
            assert results[key] == pytest.approx(reference[key], abs=1e-6), (path, runtime, key)
    folder = os.path.join(cfg.OUTPUT_DIR, "inference_openvino", DATASET)
    assert os.path.isdir(os.path.dirname(folder))  # beside, not over, the PyTorch evaluation


def test_refuses_files_that_do_not_stand_for_the_config(trained_like, tmp_path):
    run, model, onnx_path, _ = trained_like
    with pytest.raises(ExportedFileError, match="num_classes 7.*config has 5"):
        evaluate_exported(_cfg(run, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5"]), onnx_path)
    with pytest.raises(ExportedFileError, match="input_format 'RGB'.*'BGR'"):
        evaluate_exported(_cfg(run, ["INPUT.FORMAT", "BGR"]), onnx_path)
    with pytest.raises(ValueError, match="TEST.AUG.ENABLED"):
        evaluate_exported(_cfg(run, ["TEST.AUG.ENABLED", "True"]), onnx_path)
    with pytest.raises(ExportedFileError, match="is a onnx file.*not torchscript"):
        evaluate_exported(_cfg(run), onnx_path, "torchscript")
    # a file exported from random weights is no trained model's
    random_cfg = _cfg(run, ["MODEL.WEIGHTS", "", "MODEL.WEIGHTS_ALLOW_PARTIAL", "True"])
    random_path = str(tmp_path / "random.onnx")
    export_model(random_cfg, random_path, "onnx", model=model)
    with pytest.raises(ExportedFileError, match="not all loaded.*--allow-partial-weights"):
        evaluate_exported(_cfg(run), random_path)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        evaluate_exported(_cfg(run), str(tmp_path / "missing.onnx"))


def test_openvino_export_refuses_overwrite_of_either_file(trained_like, tmp_path):
    run, model, _, _ = trained_like
    cfg = _cfg(run)
    xml = tmp_path / "m.xml"
    (tmp_path / "m.bin").write_bytes(b"previous")
    with pytest.raises(OutputExistsError, match="m.bin"):
        export_model(cfg, str(xml), "openvino", model=model)
    assert (tmp_path / "m.bin").read_bytes() == b"previous" and not xml.exists()
    with pytest.raises(ValueError, match="must end in .xml"):
        export_model(cfg, str(tmp_path / "m.ir"), "openvino", model=model)
    export_model(cfg, str(xml), "openvino", model=model, overwrite=True)
    assert (tmp_path / "m.bin").read_bytes() != b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]  # no temporaries


def test_cli_prints_the_metrics(trained_like, run_main):
    run, _, onnx_path, _ = trained_like
    main = load_tool("evaluate_exported").main
    argv = [
        "--config-file",
        os.path.join(run, "config.yaml"),
        "--exported",
        onnx_path,
        "--runtime",
        "openvino",
        "MODEL.WEIGHTS",
        os.path.join(run, "model_final.pth"),
        "DATASETS.TEST",
        f"('{DATASET}',)",
        "OUTPUT_DIR",
        os.path.join(run, "cli"),
    ]
    status, out, err = run_main(main, argv)
    assert status == 0, err[-3000:]
    assert f"{onnx_path} (openvino)" in out and "sem_seg" in out and "mIoU " in out
    status, _, err = run_main(main, argv + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5"])
    assert status == 2 and "num_classes" in err and "model.onnx" in err


def test_demo_runs_the_exported_file_as_pytorch_runs_the_model(trained_like, tmp_path, run_main):
    run, _, onnx_path, ir_path = trained_like
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (60, 76)), ("b.png", (45, 90))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / name)
    main = load_script("demo/demo.py").main
    config = os.path.join(run, "config.yaml")

    def demo(out, *extra):
        common = ["--config-file", config, "--input", images, "--output", tmp_path / out, "--raw"]
        return run_main(main, common + list(extra))

    weights = ["--opts", "MODEL.WEIGHTS", os.path.join(run, "model_final.pth")]
    status, _, err = demo("torch", *weights)
    assert status == 0, err[-3000:]
    for out, extra in (("ort", ["--exported", onnx_path]), ("ov", ["--exported", ir_path])):
        status, stdout, err = demo(out, *extra)
        assert status == 0, err[-3000:]
        assert "2 input(s): wrote 4 file(s)" in stdout
        for stem in ("a", "b"):
            ours = np.asarray(Image.open(tmp_path / out / f"{stem}_sem_seg.png"))
            ref = np.asarray(Image.open(tmp_path / "torch" / f"{stem}_sem_seg.png"))
            assert ours.shape == ref.shape and (ours == ref).mean() >= 0.999, (out, stem)
    status, _, err = demo("bad", "--exported", onnx_path, "--regions", "0")
    assert status == 2 and "--regions and --attention need the PyTorch model" in err
    status, _, err = demo("bad", "--runtime", "openvino", *weights)
    assert status == 2 and "--exported" in err
    status, _, err = demo("bad", "--exported", onnx_path, "--opts", "INPUT.FORMAT", "BGR")
    assert status == 2 and "input_format" in err and not (tmp_path / "bad").exists()


def test_openvino_int8_export_quantises_all_but_ocr_attention(trained_like, tmp_path):
    """--int8-calibration: the IR holds int8 quantisation, none on the inputs of OCR's matrix
    products and softmaxes, records its calibration, runs, and follows the float model; bad
    requests are refused before anything is written."""
    pytest.importorskip("nncf")
    import openvino as ov

    run, model, _, _ = trained_like
    cfg = _cfg(run)
    path = str(tmp_path / "int8.xml")
    export_model(cfg, path, "openvino", model=model, int8_calibration=DATASET, calibration_count=2)
    meta = read_metadata(path)
    assert meta["precision"] == "int8"
    assert meta["int8"] == {
        "calibration_dataset": DATASET,
        "calibration_images": 2,
        "float_ops": ["MatMul", "Softmax"],
    }
    graph = ov.Core().read_model(path)
    ops = graph.get_ordered_ops()
    quantized = [op for op in ops if op.get_type_name() == "FakeQuantize"]
    assert quantized, "no int8 quantisation in the IR"
    for op in ops:
        if op.get_type_name() in ("MatMul", "Softmax"):
            sources = [v.get_node().get_type_name() for v in op.input_values()]
            assert "FakeQuantize" not in sources, op.get_friendly_name()
    checks = check_export(path, model, check_images([], "RGB"))
    assert all(c.agreement >= 0.5 for c in checks), checks  # random tiny model: loose
    assert read_metadata(str(trained_like[3]))["precision"] == "float32"
    with pytest.raises(ValueError, match="--int8-calibration is for --format openvino"):
        export_model(cfg, str(tmp_path / "x.onnx"), "onnx", int8_calibration=DATASET)
    with pytest.raises(KeyError):
        export_model(cfg, str(tmp_path / "y.xml"), "openvino", int8_calibration="no_such_set")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.xml").exists()
