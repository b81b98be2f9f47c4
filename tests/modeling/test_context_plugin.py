"""Adding a context module is one file: a module outside the package declares its class, its
registration and its config node, and the project's config and Trainer take it from there.

The context registry is process-global, so the plugin is imported, configured and trained in a
subprocess: nothing of it stays registered for the other tests of the session.
"""

import json
import math
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
PLUGIN_NAME = "plugin_pointwise"

# The whole plugin: class, registration, config node with its default. No other file changes.
PLUGIN = '''
"""A test context module: a 1x1 conv-norm-ReLU whose width is MODEL.PLUGIN_POINTWISE.CHANNELS."""
from torch import Tensor, nn

from panoptic_ocr.modeling import conv_norm_relu
from panoptic_ocr.modeling.contexts import CONTEXT_REGISTRY, ContextModule


@CONTEXT_REGISTRY.register("plugin_pointwise")
class PointwiseContext(ContextModule, nn.Module):
    """``[N, C_in, h, w] -> [N, CHANNELS, h, w]``."""

    CONFIG_NODE = "PLUGIN_POINTWISE"
    CONFIG_DEFAULTS = {
        # Output channels of the 1x1 conv.
        "CHANNELS": 32,
    }
    CONFIG_KEYS = {"channels": "CHANNELS"}

    def __init__(self, in_channels: int, *, channels: int, norm: str):
        super().__init__()
        self.out_channels = channels
        self.conv = conv_norm_relu(in_channels, channels, norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)
'''

# Run in the subprocess: import the plugin, build the config as train_net.py does, train.
SCRIPT = """
import json, sys

import torch

torch.set_num_threads(2)
sys.path.insert(0, sys.argv[1])
import plugin_context  # registers "plugin_pointwise" and declares MODEL.PLUGIN_POINTWISE

from detectron2.config import get_cfg

import panoptic_ocr
from panoptic_ocr.engine import Trainer

defaults = get_cfg()
panoptic_ocr.add_ocr_config(defaults)
cfg = panoptic_ocr.setup_cfg(sys.argv[2], json.loads(sys.argv[3]))
trainer = Trainer(cfg)
trainer.resume_or_load(resume=False)
trainer.train()
context = trainer.model.sem_seg_head.context
history = trainer.storage.history
print("RESULT", json.dumps({
    "default_channels": defaults.MODEL.PLUGIN_POINTWISE.CHANNELS,
    "context_class": type(context).__name__,
    "context_channels": context.out_channels,
    "conv_out_channels": context.conv.out_channels,
    "iterations": [it for _, it in history("total_loss").values()],
    "losses": {
        k: [v for v, _ in history(k).values()] for k in ("loss_sem_seg", "loss_sem_seg_aux")
    },
}))
"""


def test_a_context_module_in_one_new_file_configures_and_trains(tmp_path):
    (tmp_path / "plugin_context.py").write_text(textwrap.dedent(PLUGIN))
    opts = [
        "MODEL.SEM_SEG_HEAD.NAME",
        "ContextHead",
        "MODEL.SEM_SEG_HEAD.CONTEXT",
        PLUGIN_NAME,
        "MODEL.PLUGIN_POINTWISE.CHANNELS",
        "24",  # not the default: the override must reach it
        "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
        "16",
        "MODEL.WEIGHTS",
        "",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "INPUT.CROP.SIZE",
        "(64, 64)",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATASETS.TEST",
        "()",
        "VIS.NUM_IMAGES",
        "0",
        "OUTPUT_DIR",
        str(tmp_path / "output"),
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path),
            str(REPO_ROOT / QUICKSTART),
            json.dumps(opts),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["default_channels"] == 32  # add_ocr_config collected the plugin's node
    assert result["context_class"] == "PointwiseContext"
    assert result["context_channels"] == result["conv_out_channels"] == 24
    assert result["iterations"] == [0, 1]
    for name, values in result["losses"].items():
        assert len(values) == 2 and all(math.isfinite(v) for v in values), (name, values)


def test_the_plugin_is_not_registered_in_this_process():
    from panoptic_ocr.modeling.contexts import CONTEXT_REGISTRY

    assert PLUGIN_NAME not in CONTEXT_REGISTRY
