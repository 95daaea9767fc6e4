"""Every recipe parses into the dataclasses of its entry point, so docs cannot drift from code."""

from pathlib import Path

import pytest
import yaml

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CONFIGS = sorted(RECIPES.glob("*/*/config_*.yaml"))


def entry_point(path: Path):
    task = path.parent.name
    if task == "mt":
        from lsn import translate

        return translate.build_parser()
    if task in ("xnli", "xquad"):
        from lsn import train

        return train.build_parser()
    pytest.fail(f"No entry point known for recipe folder `{task}` ({path}).")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses(path, monkeypatch):
    # Recipes for GPUs ask for bf16; parse them as written, on a CPU machine.
    import transformers.training_args as ta

    from lsn.arguments import parse_recipe

    monkeypatch.setattr(ta, "is_torch_bf16_gpu_available", lambda *a, **k: True, raising=False)
    parsed = parse_recipe(entry_point(path), [str(path), "--output_dir", "/tmp/lsn-recipe-check"])
    model_args = parsed[0]
    assert model_args.model_name_or_path
    assert (path.parents[1] / "README.md").is_file(), "each model folder explains its recipes"


def test_recipe_overrides_and_unknown_fields(tmp_path):
    from lsn import translate
    from lsn.arguments import parse_recipe

    classes = translate.build_parser()
    recipe = RECIPES / "tiny/mt/config_specialized.yaml"
    _, data, spec, training = parse_recipe(classes, [str(recipe), "--k", "0.5", "--output_dir", str(tmp_path)])
    assert spec.k == 0.5 and data.directions == ["en-de", "de-en", "en-zh", "zh-en"] and training.max_steps == 40
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\ndirections: [en-de]\nlearning_rte: 1\n")
    with pytest.raises(ValueError, match=r"unknown fields \['learning_rte'\]"):
        parse_recipe(classes, [str(bad)])


@pytest.mark.parametrize("path", sorted((RECIPES / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_are_valid(path):
    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] in {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert config["num_processes"] >= 1


HARNESS_LISTS = sorted((RECIPES / "harness").glob("tasks_*.yaml"))


@pytest.mark.parametrize("path", HARNESS_LISTS, ids=lambda p: p.name)
def test_harness_task_lists_name_lm_eval_tasks(path):
    lm_eval = pytest.importorskip("lm_eval")
    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    known = set()
    for yaml_file in tasks_dir.rglob("*.yaml"):
        for line in yaml_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("task:") and line[5:].strip():
                known.add(line[5:].strip().strip("'\""))
    languages = yaml.safe_load(path.read_text())["languages"]
    assert languages and not set(languages.values()) - known, sorted(set(languages.values()) - known)
    readme = (RECIPES / "harness" / "README.md").read_text()
    assert "python -m lsn.harness" in readme
