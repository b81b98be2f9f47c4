"""tools/benchmark_multi_scale.py: every method on every run folder, through the test loader and
the evaluators, and a report with the runs' spread."""

from conftest import load_tool, register_first_images, tiny_run_folder

SINGLE = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
HMSA = "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml"
SUBSET = "toy_scenes_sem_seg_val_first2_benchmark_test"


def test_every_method_on_every_run(tmp_path):
    tool = load_tool("benchmark_multi_scale")
    register_first_images(SUBSET)
    tiny = ["MODEL.HMSA.ATTENTION_CHANNELS", "8"]
    single = [tiny_run_folder(tmp_path / f"single{s}", SINGLE, s, tiny)[0] for s in (1, 2)]
    hmsa = [tiny_run_folder(tmp_path / f"hmsa{s}", HMSA, s, tiny)[0] for s in (1, 2)]
    rows = tool.benchmark(single, hmsa, (0.5, 1.0, 2.0), dataset=SUBSET)
    assert [(r.method, r.run) for r in rows] == [
        ("single scale", single[0]),
        ("multi-scale average", single[0]),
        ("single scale", single[1]),
        ("multi-scale average", single[1]),
        ("HMSA at 1.0", hmsa[0]),
        ("HMSA", hmsa[0]),
        ("HMSA at 1.0", hmsa[1]),
        ("HMSA", hmsa[1]),
    ]
    for r in rows:
        assert 0 <= r.miou <= 100 and 0 <= r.mbiou <= 100
        assert len(r.ms_per_image) == 2 and r.peak_mb > 0
    # the seeds give different models, and averaging scales changes the prediction
    assert rows[0].miou != rows[2].miou or rows[0].mbiou != rows[2].mbiou
    report = tool.format_report(rows, (0.5, 1.0, 2.0))
    assert report.count("\n| ") == 5 and "± " in report and "| HMSA | 2 |" in report
    assert "native bfloat16" in tool.machine_line() and "load average" in tool.machine_line()
    (tmp_path / "empty").mkdir()
    assert tool.main(["--single", str(tmp_path / "empty"), "--hmsa", hmsa[0]]) == 1
