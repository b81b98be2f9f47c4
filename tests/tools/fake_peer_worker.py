"""A stand-in for tools/mmseg_peer_worker.py that speaks its line protocol without
mmsegmentation: it sleeps ``--sleep-ms`` per prediction, answers logits of zeros, and writes a
checkpoint with no tensors for ``--save-weights`` (which the project cannot convert)."""

import argparse
import sys
import time

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--setting", default="float32")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--save-weights")
parser.add_argument("--sleep-ms", type=float, default=20.0)
args = parser.parse_args()
image = np.load(args.input)
if args.save_weights:
    torch.save({"meta": {}, "state_dict": {}}, args.save_weights)
print("some logging line the peer prints", flush=True)
print("ready", flush=True)
first = True
for line in sys.stdin:
    command = line.split()
    if command and command[0] in ("run", "logits"):
        if first:
            print("peak_mb 12.5", flush=True)
            first = False
        start = time.perf_counter()
        time.sleep(args.sleep_ms / 1000)
        if command[0] == "run":
            print(f"ms {1000 * (time.perf_counter() - start):.3f}", flush=True)
        else:
            np.save(command[1], np.zeros((3, *image.shape[2:]), np.float32))
            print("saved", flush=True)
    else:
        break
