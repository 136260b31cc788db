"""The one bridge between Hydra/OmegaConf configs and nlnet objects.

Every other module under ``nlnet/`` takes plain constructor arguments; only this helper (and the
command-line scripts) know that configs exist. A config node is a constructor call (``_target_``).
Here too: composing a config outside ``@hydra.main`` (:func:`compose_config`, for tools, benchmarks
and tests), the up-front validation of a composed config (:func:`validate`), Hydra's errors as one line
(:func:`describe_error`), and the test command's replay of command-line overrides on the config
stored in a checkpoint (:func:`apply_overrides`).
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException, InstantiationException, MissingConfigException
from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from nlnet.data.placement import CLIP_PLACEMENTS
from nlnet.utils.errors import ConfigError, UserError, one_line, root_cause

# Errors a constructor raises for a bad argument: they become one line naming the config key.
_ARGUMENT_ERRORS = (UserError, ValueError, TypeError, FileNotFoundError, NotADirectoryError)


def instantiate(node: Any, /, **kwargs: Any) -> Any:
    """Build the object a config node describes; ``kwargs`` are runtime arguments (e.g. ``params``).

    Containers come back as plain ``dict``/``list`` (``_convert_="all"``). A constructor's error about
    an argument becomes a ``ConfigError`` naming the config key (``model.nonlocal.pairwise: ...``).
    """
    try:
        return _instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = root_cause(exc)
        if not isinstance(cause, _ARGUMENT_ERRORS):
            raise
        message = one_line(cause)
        raise ConfigError(f"{_key_named_in(node, message)}: {message}") from exc


def _source_keys(node: Any) -> Iterator[tuple[str, str]]:
    """(full key, name) of every key under ``node``; an interpolated sub-node (``${model.nonlocal}``)
    is listed under the key it comes from, which is where the user sets it."""
    if not isinstance(node, DictConfig):
        return
    for name in node.keys():
        child = node._get_node(name)
        if child is not None and child._is_interpolation():
            child = child._dereference_node()
        if child is None:
            continue
        yield child._get_full_key(None), str(name)
        yield from _source_keys(child)


def _key_named_in(node: Any, message: str) -> str:
    """The config key a constructor's message is about (messages start by naming the argument,
    ``name=value: ...``), else the node's own key."""
    found = ((re.search(rf"\b{re.escape(name)}=", message), key) for key, name in _source_keys(node))
    named = [(match.start(), key) for match, key in found if match]
    if named:
        return min(named)[1]
    return node._get_full_key(None) if isinstance(node, DictConfig) else "config"


def compose_config(config_name: str = "train", overrides: Sequence[str] = (), *, config_dir: str | os.PathLike,
                   return_hydra_config: bool = False) -> DictConfig:
    """``<config_dir>/<config_name>.yaml`` composed with ``overrides``, outside ``@hydra.main`` (scripts
    that compose many configs, benchmarks, tests).

    Args:
        config_name: the primary config (``train``, ``model_info``, ...).
        overrides: Hydra command-line overrides.
        config_dir: the config folder (the caller knows where its configs are; the package does not).
        return_hydra_config: keep the ``hydra`` node (sweeper parameters, run folders).
    """
    with initialize_config_dir(version_base="1.3", config_dir=os.path.abspath(config_dir)):
        return _hydra_compose(config_name=config_name, overrides=list(overrides),
                              return_hydra_config=return_hydra_config)


def to_container(cfg: Any) -> Any:
    """The resolved config as plain Python containers (for checkpoints and JSON)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (for logs and TensorBoard)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_container(cfg)))


def from_container(data: Any) -> DictConfig:
    """A config node from plain containers (e.g. the config stored in a checkpoint)."""
    return OmegaConf.create(data)


def counted_clip(cfg: DictConfig) -> tuple[int, int]:
    """(frames, size) of the clip a model's cost is counted on: ``input.*``, else the data config's
    clip length and test crop (the cost of one test view, as the reference model zoos report it),
    else 8 x 256."""
    frames = (OmegaConf.select(cfg, "input.frames", default=None)
              or OmegaConf.select(cfg, "data.num_frames", default=None))
    size = (OmegaConf.select(cfg, "input.size", default=None)
            or OmegaConf.select(cfg, "data.val.test_crop_size", default=None)
            or OmegaConf.select(cfg, "data.train.crop_size", default=None))
    return int(frames or 8), int(size or 256)


# ---- errors --------------------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str | None:
    """One line for an error of Hydra or OmegaConf (composing, overriding, a missing ``???`` value);
    None for any other exception."""
    cause = root_cause(exc)
    key = getattr(cause, "full_key", None)
    launcher = _launcher_error(exc)
    if launcher:
        return launcher
    if (isinstance(exc, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError))
            and key):
        return f"unknown config key '{key}' (check its spelling; to add a new key write +{key}=VALUE)"
    if isinstance(cause, MissingMandatoryValue) and key:
        return f"{key} is not set: pass {key}=VALUE on the command line"
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return one_line(exc)
    return None


def _launcher_error(exc: BaseException) -> str | None:
    """One line for ``hydra/launcher=slurm|local`` without its plugin (hydra-submitit-launcher, or
    nlnet's ``hydra_plugins/nlnet_launchers`` that Hydra's plugin scan cannot see)."""
    exc = exc if isinstance(exc, (MissingConfigException, RuntimeError)) else root_cause(exc)
    text = str(exc)
    missing = re.search(r"In 'hydra/launcher/(\w+)': Could not (?:load|find) 'hydra/launcher/submitit_", text)
    if isinstance(exc, MissingConfigException) and missing:
        return (f"hydra/launcher={missing.group(1)} needs Hydra's submitit launcher, which is not installed: "
                "pip install hydra-submitit-launcher==1.2.0 submitit==1.5.4")
    if isinstance(exc, RuntimeError) and "plugin" in text and "hydra_plugins.nlnet_launchers" in text:
        return ("hydra/launcher: Hydra does not find nlnet's launchers (hydra_plugins/nlnet_launchers); install "
                "nlnet with `pip install -e . --config-settings editable_mode=compat` (or `pip install .`)")
    return None


# ---- validation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """A numeric key's valid values: ``kind`` int or float, bounds inclusive unless ``above`` (> low)."""

    kind: type
    low: float | None = None
    high: float | None = None
    above: bool = False
    nullable: bool = False

    def describe(self) -> str:
        text = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            text += f" in {'(' if self.above else '['}{self.low}, {self.high}]"
        elif self.low is not None:
            text += f" {'>' if self.above else '>='} {self.low}"
        return text + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high


_POSITIVE, _COUNT, _FRACTION = Range(int, 1), Range(int, 0), Range(float, 0, 1)

# Numeric keys and their ranges. '*' matches one level (data.train and data.val); a key a config does
# not have is skipped, so every experiment (and keys other configs add) validates the same way.
RANGES: tuple[tuple[str, Range], ...] = (
    ("data.batch_size", _POSITIVE), ("data.num_workers", _COUNT), ("data.worker_threads", _POSITIVE),
    ("data.num_frames", _POSITIVE), ("data.sampling_rate", _POSITIVE),
    ("data.max_frame_pixels", Range(int, 1, nullable=True)),
    ("data.split", Range(int, 1, 3)),  # the official splits of UCF101 and HMDB51 (configs/data/*.yaml)
    ("data.decode_timeout", Range(float, 0, above=True, nullable=True)),
    ("data.*.num_frames", _POSITIVE), ("data.*.sampling_rate", _POSITIVE), ("data.*.crop_size", _POSITIVE),
    ("data.*.train_scale.*", _POSITIVE), ("data.*.test_scale", _POSITIVE),
    ("data.*.test_crop_size", Range(int, 1, nullable=True)), ("data.*.num_clips", _POSITIVE),
    ("data.*.num_crops", _POSITIVE), ("data.*.flip_prob", _FRACTION), ("data.*.std.*", Range(float, 0, above=True)),
    ("data.*.max_retries", _COUNT), ("data.*.decode_threads", _COUNT), ("data.*.seed", _COUNT),
    ("data.*.max_frame_pixels", Range(int, 1, nullable=True)),
    ("data.*.decode_timeout", Range(float, 0, above=True, nullable=True)),
    ("trainer.max_iter", _POSITIVE), ("trainer.seed", _COUNT), ("trainer.num_threads", Range(int, 1, nullable=True)),
    ("trainer.grad_clip_norm", Range(float, 0, above=True, nullable=True)), ("trainer.checkpoint_period", _COUNT),
    ("trainer.keep_last", _POSITIVE), ("trainer.eval_period", _COUNT),
    ("trainer.eval_batch_size", Range(int, 1, nullable=True)), ("trainer.precise_bn_iters", _COUNT),
    ("trainer.log_period", _POSITIVE),
    ("optim.lr", Range(float, 0, above=True)), ("optim.reference_batch_size", _POSITIVE),
    ("optim.weight_decay", Range(float, 0)), ("optim.norm_bias_weight_decay", Range(float, 0)),
    ("optim.optimizer.momentum", Range(float, 0)),
    ("schedule.milestones.*", _COUNT), ("schedule.gamma", Range(float, 0, above=True)),
    ("schedule.warmup_iters", _COUNT), ("schedule.warmup_factor", _FRACTION), ("schedule.final_factor", _FRACTION),
    ("schedule.max_iter", _POSITIVE),
    ("model.net.num_classes", _POSITIVE), ("model.net.base_width", _POSITIVE), ("model.net.in_channels", _POSITIVE),
    ("model.net.dropout", Range(float, 0, 1)),
)

# Keys with a fixed set of values.
CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("trainer.precision", ("fp32", "bf16", "fp16")),
    ("trainer.device", ("auto", "cpu", "cuda")),
    ("trainer.view_aggregation", ("mean", "max")),
    ("data.val.clip_placement", CLIP_PLACEMENTS),
)


def _raw_items(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full key, raw value node) of every leaf under ``node``, without resolving interpolations."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        name = f"{prefix}{str(key)}"
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() and not child._is_none():
            yield from _raw_items(child, name + ".")
        else:
            yield name, child


def _matching(cfg: DictConfig, pattern: str) -> Iterator[tuple[str, Any]]:
    """(key, resolved value) of every existing key matching ``pattern`` ('*': any one level)."""
    depth = pattern.count(".")
    for key, _ in _raw_items(cfg):
        if key.count(".") == depth and fnmatch.fnmatchcase(key, pattern) and not key.startswith("hydra"):
            yield key, OmegaConf.select(cfg, key)


def validate(cfg: DictConfig, *, splits: Sequence[str] = ()) -> None:
    """Check a composed run config before any heavy work: no value left unset (``???``), every
    numeric key of :data:`RANGES` of the right type and range, every key of :data:`CHOICES` one of
    its choices, ``data.root`` and each split's annotation file present.

    Args:
        cfg: the composed config (training tree).
        splits: the data splits the run reads (``train``, ``val``).

    Raises:
        ConfigError: naming the key, the value given and what is valid.
    """
    missing = [key for key, node in _raw_items(cfg) if node._is_missing() and not key.startswith("hydra")]
    if missing:
        raise ConfigError(f"{missing[0]} is not set: pass {missing[0]}=VALUE on the command line"
                          + (f" (also unset: {', '.join(missing[1:])})" if len(missing) > 1 else ""))
    for pattern, valid in RANGES:
        for key, value in _matching(cfg, pattern):
            if not valid.accepts(value):
                raise ConfigError(f"{key}={value!r}: must be {valid.describe()}")
    for key, choices in CHOICES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in choices:
            raise ConfigError(f"{key}={value!r}: valid choices are {', '.join(choices)}")
    _validate_paths(cfg, splits)


def _validate_paths(cfg: DictConfig, splits: Sequence[str]) -> None:
    root = OmegaConf.select(cfg, "data.root", default=None)
    if root is not None and not os.path.isdir(str(root)):
        hint = (" (create the demo dataset with: python make_synthetic_dataset.py --root "
                f"{root})" if "synthetic" in str(root) else "")
        raise ConfigError(f"data.root: directory not found: {root}{hint}")
    for split in splits:
        if OmegaConf.select(cfg, f"data.{split}", default=None) is None:
            raise ConfigError(f"data.{split} is not configured")
        for key in ("annotations", "label_map"):
            path = OmegaConf.select(cfg, f"data.{split}.{key}", default=None)
            if path is not None and not os.path.isfile(str(path)):
                raise ConfigError(f"data.{split}.{key}: file not found: {path}")


# ---- the test command: a checkpoint's stored config with the command line's overrides ---------------
def rebase_paths(config: Any, old_root: str, new_root: str) -> Any:
    """A copy of a stored (resolved) config in which every string path under ``old_root`` is moved
    under ``new_root`` (e.g. the annotation files when a test run overrides ``data.root``)."""
    if isinstance(config, dict):
        return {k: rebase_paths(v, old_root, new_root) for k, v in config.items()}
    if isinstance(config, list):
        return [rebase_paths(v, old_root, new_root) for v in config]
    if isinstance(config, str) and old_root and (config == old_root or config.startswith(old_root.rstrip("/") + "/")):
        return new_root.rstrip("/") + config[len(old_root.rstrip("/")):]
    return config


def _dependents(cfg: DictConfig, key: str) -> list[str]:
    """The keys whose value in ``cfg`` is exactly ``${key}``, and theirs in turn (data.num_frames ->
    data.train.num_frames, data.val.num_frames)."""
    found, todo = [], [key]
    while todo:
        source = todo.pop()
        for name, node in _raw_items(cfg):
            if node._value() == "${" + source + "}" and name not in found:
                found.append(name)
                todo.append(name)
    return found


def apply_overrides(stored: dict, cfg: DictConfig, overrides: Sequence[str], *,
                    own_keys: Sequence[str] = ()) -> DictConfig:
    """The config stored in a checkpoint (resolved) with the command line's overrides applied.

    A key given on the command line replaces the stored one, and so do the stored keys derived from it
    (``data.num_frames`` -> ``data.train.num_frames`` and ``data.val.num_frames``; ``data.root`` moves
    every stored path under the old root) unless training had set them to something else.

    Args:
        stored: the checkpoint's resolved config.
        cfg: the composed config of the command line (``configs/test.yaml``).
        overrides: the command line's overrides (``HydraConfig.get().overrides.task``).
        own_keys: keys of the test config itself, not of the stored training config.
    """
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "data.root" in keys:  # annotation paths move with the root
        stored = rebase_paths(stored, stored["data"]["root"], str(cfg.data.root))
    merged = OmegaConf.create(stored)
    for override, key in zip(overrides, keys):
        if key in own_keys or key.startswith("hydra"):
            continue
        if "." not in key and OmegaConf.is_dict(merged.get(key)):
            raise ConfigError(f"{override}: a checkpoint's {key} cannot be swapped; override single keys "
                              f"(e.g. {key}.<name>=VALUE)")
        value = OmegaConf.select(cfg, key)
        old = OmegaConf.select(merged, key, default=None)
        for dependent in _dependents(cfg, key):
            if dependent not in keys and OmegaConf.select(merged, dependent, default=None) == old:
                OmegaConf.update(merged, dependent, value, force_add=True)
        OmegaConf.update(merged, key, value, force_add=True)
    for key in own_keys:
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    return merged
