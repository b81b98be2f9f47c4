"""Benchmarks of panoptic_ocr, the library behind the ``tools/benchmark_*.py`` scripts.

- :mod:`.timing`: latency, peak memory and multiply-add counting, shared by all of them;
- :mod:`.heads`: the context modules beside the OCR paper's Table 4;
- :mod:`.panoptic_heads`: Panoptic-FPN's semantic branch with and without a context module;
- :mod:`.fps`: whole segmentors (FPS, memory, reduced-precision agreement);
- :mod:`.precision`: float32 against reduced precision, module by module;
- :mod:`.majority_baseline`: the majority-class baseline's mIoU;
- :mod:`.losses`: the cost of each segmentation loss and a seeded learning check.

Submodules are imported on demand (``from panoptic_ocr.benchmarks import fps``).
"""
