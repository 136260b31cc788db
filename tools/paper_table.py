"""Print a table of the paper as nlnet reproduces it: published vs. nlnet top-1 / top-5, parameters,
GFLOPs of one training clip, and how far each row's training got (rows not run yet are "pending");
Table 4 (Charades, multi-label) compares mAP.

    python tools/paper_table.py 2a                  # Table 2a: its rows' run folders under runs/
    python tools/paper_table.py 2g --csv > 2g.csv
    python tools/paper_table.py 4                   # Table 4: Charades mAP
    python tools/paper_table.py 2c trainer.schedule_unit=iterations   # rows trained with these overrides
    python tools/paper_table.py runs/paper/table2a  # a sweep folder: its rows and overrides (multirun.yaml)
    python tools/paper_table.py runs/x runs/y       # any run folders (their stored config.yaml)
    python tools/paper_table.py runs/finetune/ucf101 --mean   # a sweep's runs (e.g. data.split=1,2,3), their mean

Tables: 2a-2g, 3 and 4 (configs/experiment/paper). --no-cost skips counting parameters and GFLOPs; --mean
adds a row averaging the tested rows (the three official splits of UCF101 or HMDB51).
"""
import argparse
import os
from pathlib import Path

from omegaconf import OmegaConf

from nlnet.config import compose_config, instantiate
from nlnet.paper.tables import Published, TableRow, clip_cost, mean_row, read_progress, to_csv, to_markdown
from nlnet.checkpoint.weights import stored_model_config
from nlnet.utils.cli import ArgumentParser, run_main
from nlnet.utils.errors import ConfigError

ROWS_KEY = "+experiment/paper@_global_"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose_train(overrides: list[str]):
    return compose_config("train", overrides, config_dir=CONFIGS, return_hydra_config=True)


def table_rows(table: str, overrides: list[str], cwd: str) -> list[tuple]:
    """(config, run folder) of every row of ``table`` (e.g. "2a") under ``overrides``."""
    name = "paper/table" + table.split("table")[-1]
    rows = compose_train([f"experiment={name}", *overrides]).hydra.sweeper.params.get(ROWS_KEY)
    if rows is None:
        raise ConfigError(f"{name} is not a table of configs/experiment/paper (2a..2g, 3, 4)")
    configs = [compose_train([f"experiment=paper/{row.strip()}", *overrides]) for row in rows.split(",")]
    return [(cfg, os.path.join(cwd, cfg.hydra.run.dir)) for cfg in configs]


def folder_rows(folder: str) -> list[tuple]:
    """A sweep folder's rows (multirun.yaml) or one run folder (its config.yaml)."""
    if os.path.isfile(os.path.join(folder, "multirun.yaml")):
        sweep = OmegaConf.load(os.path.join(folder, "multirun.yaml")).hydra
        overrides = [o for o in sweep.overrides.task if not o.startswith("experiment=")]
        overrides += [o for o in sweep.overrides.hydra if o.startswith("hydra.searchpath=")]
        table = next((o for o in sweep.overrides.task if o.startswith("experiment=")), "=").split("=", 1)[1]
        if table.startswith("paper/table"):
            return table_rows(table, overrides, sweep.runtime.cwd)
        runs = sorted(os.path.join(folder, d) for d in os.listdir(folder)  # another sweep: its run folders
                      if os.path.isfile(os.path.join(folder, d, "config.yaml")))
        return [(OmegaConf.load(os.path.join(run, "config.yaml")), run) for run in runs]
    if not os.path.isfile(os.path.join(folder, "config.yaml")):
        raise ConfigError(f"{folder}: neither a run folder (config.yaml) nor a sweep folder (multirun.yaml)")
    return [(OmegaConf.load(os.path.join(folder, "config.yaml")), folder)]


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="tables (2a..2g, 3, 4), sweep or run folders, KEY=VALUE overrides")
    parser.add_argument("--csv", action="store_true", help="CSV instead of Markdown")
    parser.add_argument("--no-cost", dest="cost", action="store_false", help="skip parameters and GFLOPs")
    parser.add_argument("--mean", action="store_true", help="add a row averaging the tested rows (e.g. splits)")
    args = parser.parse_args()
    overrides = [t for t in args.targets if "=" in t and not os.path.isdir(t)]
    pairs = []
    for target in (t for t in args.targets if t not in overrides):
        pairs += folder_rows(target) if os.path.isdir(target) else table_rows(target, overrides, os.getcwd())
    rows, costs = [], {}
    for cfg, run_dir in pairs:
        cost = (None, None)
        if args.cost:
            frames, size = int(cfg.data.num_frames), int(cfg.data.train.crop_size)
            key = (OmegaConf.to_yaml(cfg.model.net, resolve=True), frames, size)
            if key not in costs:
                costs[key] = clip_cost(instantiate(stored_model_config(cfg.model).net), frames=frames, size=size)
            cost = costs[key]
        published = Published.from_config(OmegaConf.to_container(cfg.paper) if cfg.get("paper") else {},
                                          default_row=os.path.basename(run_dir.rstrip("/")))
        progress = read_progress(run_dir, planned=int(cfg.trainer.max_iter))
        rows.append(TableRow(published=published, progress=progress, run_dir=os.path.relpath(run_dir),
                             params=cost[0], gflops=cost[1]))
    if args.mean:
        rows.append(mean_row(rows))
    print(to_csv(rows) if args.csv else to_markdown(rows))


if __name__ == "__main__":
    run_main(main)
