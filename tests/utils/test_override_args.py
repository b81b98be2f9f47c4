"""One override convention everywhere: trailing KEY VALUE pairs or --opts, flags anywhere."""

import argparse

import pytest
from conftest import load_script
from detectron2.engine import default_argument_parser

from panoptic_ocr.utils.override_args import (
    add_config_overrides,
    parse_args_with_overrides,
)


def _tool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--variants", nargs="+", default=[])
    parser.add_argument("--size", type=int, default=1)
    add_config_overrides(parser)
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--config-file", "c.yaml", "MODEL.WEIGHTS", "w.pth", "SEED", "-1", "--overwrite"],
        [
            "--config-file",
            "c.yaml",
            "--opts",
            "MODEL.WEIGHTS",
            "w.pth",
            "SEED",
            "-1",
            "--overwrite",
        ],
        ["--overwrite", "MODEL.WEIGHTS", "w.pth", "--config-file", "c.yaml", "SEED", "-1"],
        ["--config-file=c.yaml", "--opts", "MODEL.WEIGHTS", "w.pth", "--overwrite", "SEED", "-1"],
    ],
)
def test_pairs_and_flags_in_any_order(argv):
    args = parse_args_with_overrides(_tool_parser(), argv)
    assert args.config_file == "c.yaml" and args.overwrite
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "SEED", "-1"]
    assert not hasattr(args, "_opts_flag")


def test_a_list_option_stops_at_the_first_config_key_and_values_are_taken_verbatim():
    argv = ["--config-file", "c", "--variants", "onnxruntime float32", "OpenVINO float32"]
    argv += ["MODEL.WEIGHTS", "", "MODEL.PIXEL_MEAN", "[1.0, -2.0, 3.0]", "--size", "4"]
    args = parse_args_with_overrides(_tool_parser(), argv)
    assert args.variants == ["onnxruntime float32", "OpenVINO float32"] and args.size == 4
    assert args.opts == ["MODEL.WEIGHTS", "", "MODEL.PIXEL_MEAN", "[1.0, -2.0, 3.0]"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config-file", "c", "MODEL.WEIGHTS"], "'MODEL.WEIGHTS' has no value"),
        (["--config-file", "c", "MODEL.WEIGHTS", "--overwrite"], "'MODEL.WEIGHTS' has no value"),
        (["--config-file", "c", "--opts", "model.weights"], "'model.weights' has no value"),
        (["--config-file", "c", "KEY", "VALUE", "..."], "['...'] are not config overrides"),
        (["--config-file", "c", "model.weights", "w.pth"], "are not config overrides"),
    ],
)
def test_a_key_without_value_is_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args_with_overrides(_tool_parser(), argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_detectron2s_parser_and_train_net_take_flags_after_the_pairs():
    argv = ["--config-file", "c.yaml", "SOLVER.MAX_ITER", "5", "--resume", "--num-gpus", "2"]
    args = parse_args_with_overrides(default_argument_parser(), argv)
    assert args.resume and args.num_gpus == 2 and args.opts == ["SOLVER.MAX_ITER", "5"]
    train_net = load_script("train_net.py")
    argv = ["--config-file", "c.yaml", "--opts", "SOLVER.MAX_ITER", "5", "--eval-only"]
    args = parse_args_with_overrides(train_net.argument_parser(), argv + ["--trust-weights"])
    assert args.eval_only and args.trust_weights and args.opts == ["SOLVER.MAX_ITER", "5"]
