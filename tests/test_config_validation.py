"""nlnet.config: up-front validation (every shipped experiment passes it; bad values are named with their
range), construction errors named by config key, Hydra's errors as one line."""
from pathlib import Path

import pytest

from helpers import CONFIGS, compose
from nlnet import config as C
from nlnet.utils.errors import ConfigError

# every experiment, the paper's rows and tables (experiment=paper/table2a/...) too; not the recipes they share
EXPERIMENTS = sorted(str(p.relative_to(Path(CONFIGS, "experiment")).with_suffix(""))
                     for p in Path(CONFIGS, "experiment").rglob("*.yaml") if "recipes" not in p.parts)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes_validation(experiment, tmp_path):
    # the ranges are checked on whatever keys a config has: new experiments and keys validate alike
    cfg = compose("train", [f"experiment={experiment}", f"data.root={tmp_path}", "run_dir=/tmp/unused"])
    C.validate(cfg)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1"),
    ("data.batch_size=true", "data.batch_size=True: must be an integer >= 1"),  # a bool is no integer
    ("data.train.flip_prob=2", "data.train.flip_prob=2: must be a number in [0, 1]"),
    ("trainer.num_threads=0", "trainer.num_threads=0: must be an integer >= 1 or null"),
    ("optim.lr=0.0", "optim.lr=0.0: must be a number > 0"),
    ("schedule.milestones=[10,-1]", "schedule.milestones.1=-1: must be an integer >= 0"),
    ("trainer.precision=half", "trainer.precision='half': valid choices are fp32, bf16, fp16"),
])
def test_a_bad_value_names_its_key_and_range(override, message, tmp_path):
    cfg = compose("train", ["experiment=nl_r50_kinetics", f"data.root={tmp_path}", "run_dir=/tmp/unused", override])
    with pytest.raises(ConfigError) as info:
        C.validate(cfg)
    assert str(info.value) == message


def test_null_is_valid_where_the_default_is_null(tmp_path):
    cfg = compose("train", ["experiment=demo", f"data.root={tmp_path}", "run_dir=/tmp/unused", "trainer.num_threads=null",
                            "data.decode_timeout=null", "data.max_frame_pixels=null", "trainer.grad_clip_norm=null"])
    C.validate(cfg)


def test_a_constructor_error_names_the_key_the_user_sets():
    # pairwise lives in model.nonlocal and reaches model.net through an interpolation
    cfg = compose("train", ["experiment=demo", "model.nonlocal.pairwise=cosine", "run_dir=/tmp/unused"])
    with pytest.raises(ConfigError, match=r"^model\.nonlocal\.pairwise: .*embedded_gaussian"):
        C.instantiate(cfg.model.net)


def test_hydra_errors_are_described_by_type():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:
        compose("train", ["model.net.dpeth=50"])
    assert C.describe_error(info.value) == ("unknown config key 'model.net.dpeth' (check its spelling; to add a new "
                                            "key write +model.net.dpeth=VALUE)")
    assert C.describe_error(ValueError("not Hydra's")) is None
