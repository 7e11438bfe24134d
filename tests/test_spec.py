"""Definitions: every broken definition names its file, key and what is allowed."""

import json
import re

import pytest

from suite import registry, resolved, spec
from suite.spec import SCALES, SpecError

FILE = "mini.toml"


def parse(doc):
    return spec.parse(doc, FILE)


def check(doc):
    """spec.parse, then the registry's checks against families and methods."""
    return registry.validate(spec.parse(doc, FILE))


def raises(key, message):
    """pytest.raises for a SpecError whose message starts with `mini.toml: <key>: `."""
    return pytest.raises(SpecError, match="^" + re.escape(f"{FILE}: {key}: ") + message)


# ---------------------------------------------------------------- a valid definition


def test_minimal_definition_parses_with_defaults(definition):
    b = check(definition)
    assert b.name == "mini" and b.family == "gpt2" and b.path == FILE
    s = b.scale("smoke")
    assert s.model == {"hidden": 16, "layers": 1, "heads": 2}
    assert (s.steps, s.batch_size, s.seq_len) == (4, 2, 16)
    assert s.data.source == "shakespeare" and s.data.tokenizer == "bytes"
    assert s.train.lr == 1e-3 and s.train.optimizer == "adamw"
    assert s.train.betas == (0.9, 0.999) and s.train.decay == "cosine"
    assert s.eval.every == 2 and s.eval.batches == 1 and s.eval.metrics == ("loss",)
    assert list(b.arms) == ["baseline"] and b.arms["baseline"].method == "baseline"


def test_scale_override_replaces_only_its_keys(definition):
    definition["train"]["weight_decay"] = 0.1
    definition["scales"]["smoke"]["train"] = {"lr": 5e-4}
    s = parse(definition).scale("smoke")
    assert s.train.lr == 5e-4
    assert s.train.weight_decay == 0.1  # still the top-level default


def test_undeclared_scale_lookup_names_the_declared_ones(definition):
    with raises("scales.paper", "this benchmark does not declare it; allowed: smoke$") as e:
        parse(definition).scale("paper")
    assert e.value.key == "scales.paper"


# ---------------------------------------------------------------- broken definitions


def test_unknown_top_level_key(definition):
    definition["trian"] = {"lr": 1.0}
    allowed = ("arms, checkpoint, data, description, eval, family, gate, name, scales, sweeps, "
               "train, tuning")
    with raises("trian", re.escape(f"unknown top-level key; allowed: {allowed}") + "$") as e:
        parse(definition)
    assert (e.value.key, e.value.file) == ("trian", FILE)
    assert e.value.allowed == allowed


def test_unknown_key_inside_train(definition):
    definition["train"]["lrate"] = 0.1
    with raises("train.lrate", "unknown key; allowed: lr, optimizer, weight_decay") as e:
        parse(definition)
    assert e.value.key == "train.lrate" and e.value.file == FILE
    assert "grad_clip" in e.value.allowed and "momentum" in e.value.allowed


def test_wrong_type(definition):
    definition["train"]["lr"] = "fast"
    with raises("train.lr", "must be a finite number, got 'fast'; allowed: peak learning "
                "rate") as e:
        parse(definition)
    assert e.value.key == "train.lr"


@pytest.mark.parametrize("steps", [-5, 0, 2.5, True, "10"])
def test_steps_must_be_a_positive_integer(definition, steps):
    definition["scales"]["smoke"]["steps"] = steps
    with raises("scales.smoke.steps", re.escape(f"must be a positive integer, got {steps!r}")):
        parse(definition)


@pytest.mark.parametrize("key", ["batch_size", "seq_len"])
def test_batch_and_sequence_must_be_positive(definition, key):
    definition["scales"]["smoke"][key] = -1
    with raises(f"scales.smoke.{key}", "must be a positive integer, got -1") as e:
        parse(definition)
    assert e.value.key == f"scales.smoke.{key}"


def test_lr_must_be_strictly_positive(definition):
    definition["train"]["lr"] = 0
    with raises("train.lr", "must be > 0.0, got 0"):
        parse(definition)


def test_range_above_high(definition):
    definition["train"]["min_lr_ratio"] = 1.5
    with raises("train.min_lr_ratio", "must be <= 1.0, got 1.5"):
        parse(definition)


def test_bad_betas(definition):
    definition["train"]["betas"] = [0.9, 1.0]
    with raises("train.betas", re.escape("must be two numbers in [0, 1), got [0.9, 1.0]")):
        parse(definition)


def test_unknown_scale_name(definition):
    definition["scales"]["huge"] = definition["scales"]["smoke"]
    with raises("scales.huge", "unknown scale; allowed: smoke, tiny, small, paper$") as e:
        parse(definition)
    assert e.value.key == "scales.huge" and e.value.allowed == ", ".join(SCALES)


def test_unknown_key_inside_a_scale(definition):
    definition["scales"]["smoke"]["stepz"] = 3
    with raises("scales.smoke.stepz", "unknown key; allowed: batch_size, data, eval, model"):
        parse(definition)


@pytest.mark.parametrize("key", ["model", "steps", "batch_size"])
def test_missing_scale_key(definition, key):
    del definition["scales"]["smoke"][key]
    with raises(f"scales.smoke.{key}", "missing$"):
        parse(definition)


def test_missing_required_lr(definition):
    del definition["train"]["lr"]
    with raises("train.lr", re.escape("missing (peak learning rate)")):
        parse(definition)


def test_missing_arms(definition):
    del definition["arms"]
    with raises("arms", "missing; declare at least"):
        parse(definition)


def test_unknown_family(definition):
    definition["family"] = "gpt3"
    b = parse(definition)  # spec does not know families; the registry does
    with raises("family", "unknown family 'gpt3'; allowed: bert, gpt2, vit, decoder, llama$") as e:
        registry.validate(b)
    assert e.value.key == "family" and e.value.file == FILE


def test_size_the_family_cannot_build(definition):
    definition["scales"]["smoke"]["model"] = {"hidden": 16, "layers": 1, "heads": 3}
    with raises("scales.smoke.model.heads", "hidden=16 is not divisible by heads=3") as e:
        check(definition)
    assert e.value.key == "scales.smoke.model.heads"


def test_unknown_size_key(definition):
    definition["scales"]["smoke"]["model"]["depth"] = 2
    with raises("scales.smoke.model.depth", "unknown size key; allowed: ffn, heads, hidden"):
        check(definition)


def test_missing_seq_len_for_a_text_family(definition):
    del definition["scales"]["smoke"]["seq_len"]
    with raises("scales.smoke.seq_len", "missing; family gpt2 reads text") as e:
        check(definition)
    assert e.value.key == "scales.smoke.seq_len"


def test_unknown_optimizer(definition):
    definition["train"]["optimizer"] = "adam"
    with raises("train.optimizer", "unknown value 'adam'; allowed: adamw, sgd$") as e:
        parse(definition)
    assert e.value.allowed == "adamw, sgd"


def test_unknown_metric(definition):
    definition["eval"]["metrics"] = ["loss", "bleu"]
    with raises("eval.metrics", re.escape("unknown metric(s) ['bleu']; allowed: loss, top1")):
        parse(definition)


def test_unknown_arm_method(definition):
    definition["arms"]["fast"] = {"method": "magic"}
    with raises("arms.fast.method", "unknown method 'magic'; allowed: baseline, vcycle") as e:
        check(definition)
    assert e.value.key == "arms.fast.method"


def test_arm_without_method(definition):
    definition["arms"]["fast"] = {"levels": 2}
    with raises("arms.fast.method", "missing or not a string"):
        parse(definition)


def test_baseline_takes_no_options(definition):
    definition["arms"]["baseline"]["levels"] = 2
    with raises("arms.baseline.levels", "unknown option of method 'baseline'; allowed: none"):
        check(definition)


def test_vcycle_options_are_checked(definition):
    definition["arms"]["vc"] = {"method": "vcycle", "alpha": 1.5}
    with raises("arms.vc.alpha", re.escape("1.5 is not allowed; allowed: a number in [0, 1]")):
        check(definition)
    definition["arms"]["vc"] = {"method": "vcycle", "levels": 2}  # the fixture has 1 layer
    with raises("arms.vc.levels", "model layers=1 does not halve evenly"):
        check(definition)


def test_top1_on_a_non_classifier(definition):
    definition["eval"]["metrics"] = ["loss", "top1"]
    with raises("eval.metrics", "top1 needs a classifier, gpt2 is causal-lm; allowed: loss$"):
        check(definition)


def test_eval_every_beyond_steps(definition):
    definition["eval"]["every"] = 5
    with raises("eval.every", re.escape("5 is more than the 4 steps of scale smoke; "
                                        "allowed: 1..4")):
        check(definition)


def test_text_source_on_an_image_family(definition):
    definition["family"] = "vit"
    definition["scales"]["smoke"] = {"model": {"hidden": 16, "layers": 1, "heads": 2, "patch": 7},
                                     "batch_size": 2, "steps": 4}
    with raises("data.source", re.escape("'shakespeare' is not images data (family vit); "
                                         "allowed: fashion-mnist, mnist-5k, a path, or 'user'")):
        check(definition)


def test_image_source_on_a_text_family(definition):
    definition["data"]["source"] = "fashion-mnist"
    with raises("data.source", re.escape("'fashion-mnist' is not text data (family gpt2)")):
        check(definition)


def test_seq_len_on_an_image_family(definition):
    definition["family"] = "vit"
    definition["data"]["source"] = "fashion-mnist"
    definition["scales"]["smoke"]["model"]["patch"] = 7
    with raises("scales.smoke.seq_len", "family vit reads images; remove seq_len"):
        check(definition)


def test_patch_must_divide_the_image(definition):
    definition["family"] = "vit"
    definition["data"]["source"] = "fashion-mnist"
    definition["scales"]["smoke"] = {"model": {"hidden": 16, "layers": 1, "heads": 2, "patch": 5},
                                     "batch_size": 2, "steps": 4}
    with raises("scales.smoke.model.patch", "patch=5 does not divide the image size 28"):
        check(definition)


def test_override_errors_name_the_scale_table(definition):
    definition["scales"]["smoke"]["train"] = {"lrr": 0.1}
    with raises("scales.smoke.train.lrr", "unknown key; allowed: lr,") as e:
        parse(definition)
    assert e.value.key == "scales.smoke.train.lrr"

    del definition["scales"]["smoke"]["train"]
    definition["train"]["lrr"] = 0.1
    with raises("train.lrr", "unknown key") as e:
        parse(definition)
    assert e.value.key == "train.lrr"


def test_override_value_errors_name_their_origin(definition):
    definition["scales"]["smoke"]["train"] = {"lr": -1.0}
    with raises("scales.smoke.train.lr", "must be > 0.0, got -1.0"):
        parse(definition)
    definition["scales"]["smoke"]["train"] = {"optimizer": "adam"}
    with raises("scales.smoke.train.optimizer", "unknown value 'adam'"):
        parse(definition)
    # a bad top-level value is blamed on the top-level table even when a scale overrides others
    definition["scales"]["smoke"]["train"] = {"weight_decay": 0.1}
    definition["train"]["decay"] = "exp"
    with raises("train.decay", "unknown value 'exp'; allowed: cosine, linear, constant"):
        parse(definition)


def test_override_that_is_not_a_table(definition):
    definition["scales"]["smoke"]["eval"] = 3
    with raises("scales.smoke.eval", "must be a table, got int"):
        parse(definition)


# ---------------------------------------------------------------- files


def test_invalid_toml_syntax(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[train\nlr = 1\n')
    with pytest.raises(SpecError, match="^" + re.escape(f"{path}: (syntax): not valid TOML")) as e:
        spec.load(path)
    assert e.value.file == str(path) and e.value.key == "(syntax)"


def test_nonexistent_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="^" + re.escape(f"{path}: (file): no such file")) as e:
        spec.load(path)
    assert e.value.file == str(path)


def test_load_takes_the_name_from_the_file_stem(tmp_path, mini_toml):
    path = tmp_path / "stemmed.toml"
    path.write_text(mini_toml().replace('name = "mini"\n', ""))
    b = spec.load(path)
    assert b.name == "stemmed" and b.path == str(path)


def test_errors_in_a_file_name_the_file(tmp_path, mini_toml):
    path = tmp_path / "user.toml"
    path.write_text(mini_toml().replace("steps = 4", "steps = -5"))
    with pytest.raises(SpecError, match="^" + re.escape(f"{path}: scales.smoke.steps: ")):
        spec.load(path)


def test_with_data_source_replaces_one_scale(definition):
    b = parse(definition)
    b2 = spec.with_data_source(b, "smoke", "/data/corpus.txt")
    assert b2.scale("smoke").data.source == "/data/corpus.txt"
    assert b.scale("smoke").data.source == "shakespeare"  # the original is untouched


# ---------------------------------------------------------------- the registry


def test_builtin_benchmarks(builtin_benchmarks):
    assert set(builtin_benchmarks) == {"bert", "gpt", "deit", "bert-large", "ode", "llama"}
    for name, b in builtin_benchmarks.items():
        assert tuple(b.scales) == SCALES, name
        assert "baseline" in b.arms, name
        assert b.path.endswith(f"{name}.toml")
    families = {n: b.family for n, b in builtin_benchmarks.items()}
    assert families == {"bert": "bert", "bert-large": "bert", "gpt": "gpt2", "deit": "vit",
                        "ode": "decoder", "llama": "llama"}


def test_builtin_paper_scales_need_user_data(builtin_benchmarks):
    for name, b in builtin_benchmarks.items():
        assert b.scale("paper").data.source == registry.USER_SOURCE, name
        assert b.scale("smoke").data.source != registry.USER_SOURCE, name


def test_user_file(tmp_path, mini_toml):
    path = tmp_path / "mine.toml"
    path.write_text(mini_toml("mine"))
    benches = registry.load_benchmarks([path])
    assert list(benches) == ["mine"]
    assert benches["mine"].path == str(path)


def test_user_folder(tmp_path, mini_toml):
    (tmp_path / "a.toml").write_text(mini_toml("one"))
    (tmp_path / "b.toml").write_text(mini_toml("two"))
    (tmp_path / "notes.txt").write_text("not a definition")
    benches = registry.load_benchmarks([tmp_path])
    assert set(benches) == {"one", "two"}
    assert benches["two"].path == str(tmp_path / "b.toml")


def test_duplicate_names_across_files(tmp_path, mini_toml):
    (tmp_path / "a.toml").write_text(mini_toml("same"))
    (tmp_path / "b.toml").write_text(mini_toml("same"))
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'b.toml'}: name: benchmark "
                                                  f"'same' is already defined in "
                                                  f"{tmp_path / 'a.toml'}")) as e:
        registry.load_benchmarks([tmp_path])
    assert e.value.key == "name"


def test_user_name_clashing_with_builtin(tmp_path, mini_toml):
    path = tmp_path / "gpt.toml"
    path.write_text(mini_toml("gpt"))
    with pytest.raises(SpecError, match="'gpt' is already defined"):
        registry.load_benchmarks([resolved.BUILTIN, path])


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path}: (folder): holds no *.toml")):
        registry.load_benchmarks([tmp_path])
    missing = tmp_path / "missing.toml"
    with pytest.raises(SpecError, match=re.escape(f"{missing}: (file): no such file or folder")):
        registry.load_benchmarks([missing])


def test_broken_user_file_is_reported_before_loading_others(tmp_path, mini_toml):
    (tmp_path / "a.toml").write_text(mini_toml("fine"))
    (tmp_path / "b.toml").write_text(mini_toml("bad").replace("heads = 2", "heads = 3"))
    with pytest.raises(SpecError) as e:
        registry.load_benchmarks([tmp_path])
    assert e.value.file == str(tmp_path / "b.toml")
    assert e.value.key == "scales.smoke.model.heads"


def test_gate_rule_defaults_and_errors(definition):
    from suite.spec import GateSpec

    assert parse(definition).gate == GateSpec()
    definition["gate"] = {"tolerance": 0.05, "claims_at": ["tiny", "paper"]}
    g = parse(definition).gate
    assert (g.tolerance, g.claims_at, g.min_seeds) == (0.05, ("tiny", "paper"), 3)
    definition["gate"] = {"claims_at": ["huge"]}
    with raises("gate.claims_at", re.escape("unknown scale(s) ['huge']; allowed: smoke, tiny")):
        parse(definition)
    assert g.unresolved_at == ()
    definition["gate"] = {"unresolved_at": ["tiny", "medium"]}
    with raises("gate.unresolved_at", re.escape("unknown scale(s) ['medium']; allowed:")):
        parse(definition)
    definition["gate"] = {"tolerence": 0.1}
    with raises("gate.tolerence", "unknown key; allowed: tolerance, budget_tolerance"):
        parse(definition)


def test_the_readme_minimal_definition_is_valid():
    """The README's "Adding a benchmark" block, as a new user copies it: it parses and passes
    the registry's checks at every scale it declares, with the values it shows (a new-user trial
    found it failing twice)."""
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Adding a benchmark", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    bench = registry.validate(spec.parse(tomllib.loads(block), "mine.toml", "mine"))
    declared = set(re.findall(r"^\[scales\.(\w+)\]", block, flags=re.M))
    assert declared and set(bench.scales) == declared
    assert bench.scale("smoke").eval.every == 10 and bench.scale("smoke").train.lr == 1e-3
    assert list(bench.arms) == ["baseline"]


def test_an_arm_may_train_with_its_own_values(tmp_path, mini_toml):
    """Issue 23: an arm can have its own lr (a baseline tuned as well as a method): its plan
    trains with it, its manifest's definition records it, other arms keep the definition's."""
    from suite import methods

    text = mini_toml() + '\n[arms.baseline.train]\nlr = 2e-3\nwarmup = 0.1\n' \
        '\n[arms.other]\nmethod = "baseline"\n'
    path = tmp_path / "mini.toml"
    path.write_text(text)
    b = registry.load_benchmarks([path])["mini"]
    scale = b.scale("smoke")
    assert b.arms["baseline"].train == {"lr": 2e-3, "warmup": 0.1}
    own = methods.plan(b.arms["baseline"], scale).steps[0].optim
    assert (own.lr, own.warmup, own.optimizer) == (2e-3, 0.1, "adamw")
    assert methods.plan(b.arms["other"], scale).steps[0].optim == scale.train
    assert b.resolved("smoke", "baseline")["arm"]["train"] == {"lr": 2e-3, "warmup": 0.1}


@pytest.mark.parametrize(("table", "message"), [
    ("lr = -1.0", r"arms\.baseline\.train\.lr: must be > 0\.0, got -1\.0"),
    ("decay = \"steep\"", r"arms\.baseline\.train\.decay: unknown value 'steep'; allowed: "
                          r"cosine, linear, constant"),
    ("alpha = 0.5", r"arms\.baseline\.train\.alpha: unknown key; allowed: lr, optimizer"),
])
def test_an_arms_own_train_values_are_checked_like_the_definitions(tmp_path, mini_toml, table,
                                                                   message):
    path = tmp_path / "mini.toml"
    path.write_text(mini_toml() + f"\n[arms.baseline.train]\n{table}\n")
    with pytest.raises(spec.SpecError, match=message):
        registry.load_benchmarks([path])


def test_a_definition_recorded_before_arms_had_train_values_reads_as_none(builtin_benchmarks):
    """The committed runs' definitions lack arm.train: it reads as {} (gate-able as they are)."""
    new = json.loads(json.dumps(builtin_benchmarks["gpt"].resolved("smoke", "vcycle")))
    old = {**new, "arm": {k: v for k, v in new["arm"].items() if k != "train"}}
    assert resolved.definition_difference(new, old) is None
    tuned = {**new, "arm": {**new["arm"], "train": {"lr": 1.0}}}
    assert resolved.definition_difference(tuned, old) == "arm.train.lr (only in fresh)"
