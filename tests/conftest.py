"""Shared test set-up: CPU only, a small thread count, toy data in a per-session folder."""

import itertools
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The toy scenes are generated once per test session (a few seconds) into a shared folder,
# unless the caller points DETECTRON2_DATASETS somewhere already.
os.environ.setdefault("DETECTRON2_DATASETS", str(REPO_ROOT / "datasets"))

import torch  # noqa: E402

# Under pytest-xdist (PYTEST_XDIST_WORKER set) the workers share the cores: one thread each,
# in the subprocesses that the tests start too (unless the caller set OMP_NUM_THREADS).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import tqdm  # noqa: E402

# No tqdm monitor thread in the test processes: a run's worker once aborted inside it (a lock
# acquire) while the tests forked process pools; the bars print the same without it.
tqdm.tqdm.monitor_interval = 0

from detectron2.config import get_cfg  # noqa: E402

import panoptic_ocr  # noqa: E402,F401  (registers everything)
from panoptic_ocr.export.signal_stack import (  # noqa: E402
    current_signal_stack,
    signal_stack_kept,
)


def make_cfg(config_file: str = None, opts=None):
    """A mutable project config, optionally merged from ``config_file`` (repo-relative) and opts."""
    cfg = get_cfg()
    panoptic_ocr.add_ocr_config(cfg)
    if config_file:
        cfg.merge_from_file(str(REPO_ROOT / config_file))
    if opts:
        cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture
def cfg_factory():
    return make_cfg


@pytest.fixture(autouse=True)
def signal_stack_unchanged(request):
    """Every test leaves the thread's signal stack as it found it. OpenVINO's CPU plugin,
    loaded outside ``signal_stack_kept``, replaces it and, released out of order, leaves a freed
    one installed: the next signal then killed a make test worker without a word. A test that
    leaves it replaced fails here, and the stack is put back for the tests after it."""
    with signal_stack_kept():
        before = current_signal_stack()
        yield
        after = current_signal_stack()
    if after != before:
        pytest.fail(
            f"{request.node.nodeid} replaced the thread's signal stack ({before} -> {after}): "
            "load OpenVINO's CPU plugin inside panoptic_ocr.export.signal_stack.signal_stack_kept()"
        )


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors: one thread is as fast as two and suffers no OpenMP
    barrier stalls when the machine's cores are shared. Use with ``pytestmark``/autouse."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_batchnorm(module: torch.nn.Module, seed: int = 0, spread: float = 0.2) -> None:
    """Give every BatchNorm2d non-trivial statistics and affine parameters, so that code that
    must apply them (a reference computation, BN folding) is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * spread)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * spread)


def load_tool(name: str):
    """The script ``tools/<name>.py`` as a module named ``name`` (loaded once, then kept in
    ``sys.modules``), to test the logic that the tool holds: ``load_tool("benchmark_fps")``."""
    import importlib.util
    import sys

    if name not in sys.modules:
        path = REPO_ROOT / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


# Shared by the test files: the quickstart config, the shared sample data, and overrides that
# keep a quickstart (R18 + OCR) model small and its CPU training fast.
QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RANDOM_WEIGHTS = ["MODEL.WEIGHTS", "", "MODEL.WEIGHTS_ALLOW_PARTIAL", "True"]
TINY_OCR = [
    "MODEL.OCR.MID_CHANNELS",
    "32",
    "MODEL.OCR.KEY_CHANNELS",
    "16",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "32",
]
FAST_TRAINING = TINY_OCR + [
    "INPUT.CROP.SIZE",
    "(64, 64)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
]


def load_script(path: str):
    """The script at ``path`` (repository-relative: ``"datasets/prepare_lip.py"``) as a new
    module named after its file, executed afresh on each call (module-level defaults see the
    current environment) with the script's folder first on ``sys.path``, as ``python <path>``
    has it (``demo/demo.py`` imports ``runner`` from beside it)."""
    import importlib.util
    import sys

    file = REPO_ROOT / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.parent))
    return module


@pytest.fixture
def quiet_setup_logger(monkeypatch):
    """Detectron2's ``setup_logger`` as a no-op (returning the logger) for this test, in every
    loaded module that imported it and in those loaded meanwhile: called in the test process it
    would bind a handler to this test's captured stdout and stop the project's loggers
    propagating (to caplog) for the rest of the worker's tests."""
    import logging
    import sys
    import types

    from detectron2.utils import logger as d2_logger

    original = d2_logger.setup_logger

    def setup_logger(*args, name="detectron2", **kwargs):
        return logging.getLogger(name)

    def modules_holding(function):
        return [
            module
            for module in list(sys.modules.values())
            if isinstance(module, types.ModuleType)
            and module.__dict__.get("setup_logger") is function
        ]

    for module in modules_holding(original):  # detectron2.utils.logger among them
        monkeypatch.setattr(module, "setup_logger", setup_logger)
    yield
    for module in modules_holding(setup_logger):  # those imported during the test
        module.setup_logger = original


@pytest.fixture
def run_main(capsys, quiet_setup_logger):
    """``run_main(main, argv)``: a script's ``main(argv)`` called in this process (no second
    torch import) instead of ``python <script> argv``: ``(status, stdout, stderr)``, with
    ``quiet_setup_logger``."""

    def run(main, argv):
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


# pytest-xdist (`make test`: -n 2 --dist loadfile) hands whole files to the workers in the
# order of this list first, then in collection order; its default reordering (most tests first)
# is turned off, as it would start the slow files of few tests last, one worker running alone
# at the end. Slowest first (measured on 2 shared cores; update when a file's cost changes).
SLOW_FILES_FIRST = (
    "test_panoptic_fpn.py",
    "test_resume.py",
    "test_launch.py",
    "test_released_checkpoints.py",
    "test_training.py",
    "test_weight_safety.py",
    "test_inference.py",
    "test_global_state.py",
    "test_export.py",
    "test_custom_dataset.py",
    "test_cityscapes_panoptic_fpn.py",
    "test_exported_evaluation.py",
    "test_compiled_inference.py",
    "test_benchmark_runtimes.py",
    "test_context_heads.py",
)


# End-to-end tests of more than ~8 s each on this project's 2 shared cores (pytest --durations):
# marked ``slow``. ``make test`` leaves them out, ``make test-slow`` runs them; CI (.ci/run) runs
# both. Node ids without parameters (every parametrisation is marked).
SLOW_TESTS = frozenset(
    {
        "tests/checkpoint/test_nvidia_mscale.py::test_every_stage_matches_nvidia",
        "tests/checkpoint/test_released_checkpoints.py::test_released_logits_match",
        "tests/checkpoint/test_weight_safety.py::test_train_net_refuses_to_share_an_output_folder",
        "tests/data/test_custom_dataset.py::test_docs_commands_run_as_written",
        "tests/data/test_prepare_cli.py::test_every_prepare_script_imports_when_run_as_a_file",
        "tests/engine/test_cityscapes_panoptic_fpn.py::test_toy_scale_training_of_panoptic_fpn_ocr_runs_through_train_net_and_evaluates",
        "tests/engine/test_compiled_inference.py::test_compiled_copy_matches_eager_and_leaves_the_model_alone",
        "tests/engine/test_hmsa_training.py::test_train_net_trains_and_evaluates_hmsa",
        "tests/engine/test_launch.py::test_a_dead_peer_stops_the_other_machine",
        "tests/engine/test_launch.py::test_two_machines_train_and_evaluate_as_one_process",
        "tests/engine/test_panoptic_fpn.py::test_each_variant_builds_from_its_config_and_its_loss_falls_on_toy_data",
        "tests/engine/test_panoptic_fpn.py::test_eval_only_reports_every_evaluator_and_two_processes_agree_with_one",
        "tests/engine/test_resume.py::test_sigkilled_training_resumes_to_the_end",
        "tests/engine/test_training.py::test_failure_keeps_what_was_written",
        "tests/engine/test_training.py::test_short_training_lowers_loss",
        "tests/engine/test_web_demo.py::test_page_segments_an_uploaded_image_in_chromium",
        "tests/export/test_export.py::test_multi_scale_attention_exports_with_its_scales",
        "tests/export/test_exported_evaluation.py::test_openvino_int8_export_quantises_all_but_ocr_attention",
        "tests/export/test_exported_evaluation.py::test_openvino_ir_matches_pytorch_and_records_metadata",
        "tests/modeling/test_context_heads.py::test_benchmark_json_smoke",
        "tests/modeling/test_context_plugin.py::test_a_context_module_in_one_new_file_configures_and_trains",
        "tests/modeling/test_inference.py::test_trainer_reports_tta_results_under_their_own_name",
        "tests/modeling/test_inference_builder.py::test_panoptic_fpn_runs_in_bfloat16_and_returns_float32",
        "tests/modeling/test_segfix_model.py::test_train_net_trains_and_evaluates_segfix",
        "tests/test_global_state.py::test_import_leaves_every_detectron2_registration_untouched",
        "tests/tools/test_benchmark_multi_scale.py::test_every_method_on_every_run",
        "tests/tools/test_benchmark_runtimes.py::test_peer_rows_are_timed_in_the_same_rounds_or_say_why",
        "tests/tools/test_benchmark_runtimes.py::test_runtimes_agree_with_eager_and_unavailable_ones_say_why",
        "tests/tools/test_benchmark_segfix.py::test_plain_and_refined_per_seed",
        "tests/tools/test_tools_inference.py::test_benchmark_fps_table_and_argument_errors",
    }
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist installed
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a serial run keeps pytest's order
        rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files whole


def tiny_run_folder(path, config: str, seed: int, opts=()):
    """A ``train_net.py``-like run folder (``config.yaml``, ``model_final.pth``) of ``config``'s
    model with the tiny OCR widths, plain BN and random weights of ``seed``; returns
    ``(folder, model)`` so that a test may set weights before they are saved (call
    :func:`save_run_weights` then)."""
    from detectron2.modeling import build_model

    path.mkdir()
    cfg = make_cfg(config, RANDOM_WEIGHTS + TINY_OCR + list(opts))
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = cfg.MODEL.SEGFIX.NORM = "BN"
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    torch.manual_seed(seed)
    model = build_model(cfg)
    (path / "config.yaml").write_text(cfg.dump())
    save_run_weights(path, model)
    return str(path), model


def save_run_weights(path, model) -> None:
    """``model``'s weights as the run folder's ``model_final.pth``."""
    torch.save({"model": model.state_dict()}, Path(path) / "model_final.pth")


def register_first_images(name: str, source: str = "toy_scenes_sem_seg_val", count: int = 2):
    """Register ``name``: the first ``count`` records of the semantic dataset ``source``, with
    its classes (once per process)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        return name
    records = DatasetCatalog.get(source)[:count]
    DatasetCatalog.register(name, lambda: records)
    meta = MetadataCatalog.get(source)
    MetadataCatalog.get(name).set(
        stuff_classes=meta.stuff_classes, ignore_label=meta.ignore_label, evaluator_type="sem_seg"
    )
    return name


_registration_counter = itertools.count()


@pytest.fixture
def d2root(tmp_path, monkeypatch):
    """An empty $DETECTRON2_DATASETS for this test."""
    root = tmp_path / "d2"
    root.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root


@pytest.fixture
def fresh_prefix():
    """A dataset-name prefix unique to this test; its registrations are removed afterwards."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    prefix = f"test{next(_registration_counter)}"
    yield prefix
    for name in [n for n in DatasetCatalog.list() if n.startswith(prefix + "_")]:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
