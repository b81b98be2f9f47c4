"""The refactor check: fingerprints are reproducible and a change shows as a difference."""

from conftest import REPO_ROOT, load_tool

fingerprints = load_tool("fingerprint_configs")  # the logic is in tools/fingerprint_configs.py
compare_fingerprints, fingerprint_config = (
    fingerprints.compare_fingerprints,
    fingerprints.fingerprint_config,
)

QUICKSTART = str(REPO_ROOT / "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml")


def test_fingerprint_is_reproducible_and_detects_a_change():
    first = fingerprint_config(QUICKSTART)
    assert fingerprint_config(QUICKSTART) == first
    assert set(first["losses"]) == {"loss_sem_seg", "loss_sem_seg_aux"}
    changed = dict(first, eval_sum=first["eval_sum"] + 1e-9)
    result = compare_fingerprints({"a": first, "b": first}, {"a": first, "b": changed, "c": first})
    assert result == {"same": ["a"], "different": ["b"], "only_before": [], "only_after": ["c"]}
