"""The launcher configs (configs/hydra/launcher/) without a cluster: they compose with every key
overridable and name nlnet's launchers, which Hydra's plugin scan finds; a plain run naming a launcher
becomes a one-row sweep into its own run folder; a missing plugin is one line; the tools' main
function can be pickled into a job."""
import pickle

import cloudpickle
import pytest
from helpers import CONFIGS
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins

from nlnet.config import compose_config, describe_error
from nlnet.utils.cli import one_line_errors, submit_plain_run
from nlnet.utils.errors import ConfigError


@pytest.mark.parametrize("name, cls", [("slurm", "SlurmLauncher"), ("local", "LocalLauncher")])
def test_launcher_configs_compose_and_name_nlnets_launchers(name, cls):
    overrides = ["experiment=demo", f"hydra/launcher={name}", "hydra.launcher.nodes=2",
                 "hydra.launcher.tasks_per_node=8", "hydra.launcher.gpus_per_node=8", "hydra.launcher.timeout_min=60"]
    if name == "slurm":
        overrides += ["hydra.launcher.partition=gpu", "hydra.launcher.signal_delay_s=300",
                      "+hydra.launcher.additional_parameters.mail-type=END"]
    launcher = compose_config("train", overrides, config_dir=CONFIGS, return_hydra_config=True).hydra.launcher
    target = f"hydra_plugins.nlnet_launchers.launchers.{cls}"
    assert launcher._target_ == target
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node, launcher.timeout_min) == (2, 8, 8, 60)
    if name == "slurm":
        assert (launcher.partition, launcher.signal_delay_s) == ("gpu", 300)
        assert launcher.additional_parameters == {"mail-type": "END"}
    assert target in Plugins.instance().class_name_to_class  # Hydra instantiates only scanned plugins


def test_a_plain_run_naming_a_launcher_is_a_one_row_sweep_in_its_run_folder():
    args = ["experiment=demo", "hydra/launcher=slurm"]
    assert submit_plain_run(args) == ["--multirun", "hydra.sweep.dir=${hydra.run.dir}", "hydra.sweep.subdir=.", *args]
    for unchanged in (["experiment=demo"], ["-m", *args], ["--multirun", *args]):
        assert submit_plain_run(unchanged) == unchanged


def test_a_missing_submitit_launcher_is_one_line(tmp_path):
    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "slurm.yaml").write_text("defaults:\n  - submitit_absent\n  - _self_\n")
    (tmp_path / "train.yaml").write_text("a: 1\n")
    with pytest.raises(Exception) as info, initialize_config_dir(version_base="1.3", config_dir=str(tmp_path)):
        compose("train", ["hydra/launcher=slurm"])
    assert describe_error(info.value) == ("hydra/launcher=slurm needs Hydra's submitit launcher, which is not "
                                          "installed: pip install hydra-submitit-launcher==1.2.0 submitit==1.5.4")


def _fails() -> None:
    raise ConfigError("trainer.max_iter=0: must be an integer >= 1")


def test_a_tools_main_function_pickles_into_a_job(capsys):
    main = pickle.loads(cloudpickle.dumps(one_line_errors()(_fails)))  # what submitit does with it
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: trainer.max_iter=0: must be an integer >= 1\n"
