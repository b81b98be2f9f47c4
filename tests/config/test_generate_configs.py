"""tools/generate_configs.py reproduces the committed configs byte for byte."""

from conftest import REPO_ROOT, load_tool


def _generator():
    return load_tool("generate_configs")


def test_generator_reproduces_the_committed_configs(tmp_path):
    generator = _generator()
    assert generator.main(["--output-dir", str(tmp_path)]) == 0
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(generated) > 50  # Base-Semantic.yaml and every dataset's folder
    committed = REPO_ROOT / "configs"
    for rel in generated:
        assert (committed / rel).is_file(), f"configs/{rel} is generated but not committed"
        assert (committed / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"configs/{rel} differs from the output of tools/generate_configs.py (regenerate it)"
        )
    # The generator owns every *.yaml directly in its folders (subfolders such as authors/ or
    # released/ hold hand-written configs).
    owned = set(generated)
    for folder in generator.GENERATED_FOLDERS:
        assert (tmp_path / folder).is_dir(), f"{folder} is in GENERATED_FOLDERS but not written"
        for path in sorted((committed / folder).glob("*.yaml")):
            rel = path.relative_to(committed)
            assert rel in owned, f"configs/{rel} is not written by tools/generate_configs.py"


def test_generate_returns_what_it_wrote(tmp_path):
    written = _generator().generate(tmp_path)
    assert sorted(written) == sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(set(written)) == len(written)  # no file is written twice
