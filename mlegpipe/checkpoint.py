"""Checkpoints: safe, atomic save and load of trainable stages.

A checkpoint is one file written with :func:`torch.save` holding a plain dict:
the stage's state (tensors, numbers, strings, lists and dicts of them; NumPy
arrays are stored as tensors) and JSON-able metadata (plugin kind and name,
parameters, features, package version, seed; no wall-clock time, so the same
training gives the same bytes and the same sha256). Files are written to a
temporary name and renamed, so a crash never leaves half a checkpoint.

Loading uses ``torch.load(weights_only=True)`` only: a file that needs any
other Python object to unpickle (and could run code doing so) is refused with
:class:`~mlegpipe.exceptions.CheckpointError`.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "model.pt"
    >>> _ = save_checkpoint(path, {"w": torch.ones(2)}, kind="generator", plugin="flow", features=["x"])
    >>> ckpt = load_checkpoint(path, expect_plugin="flow")
    >>> ckpt.state["w"].tolist(), ckpt.metadata["features"]
    ([1.0, 1.0], ['x'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlegpipe import __version__
from mlegpipe.context import StageContext
from mlegpipe.exceptions import CheckpointError, ConfigError

if TYPE_CHECKING:
    from mlegpipe.registry import StageRegistry
    from mlegpipe.stages import Generator, Stage

__all__ = [
    "FORMAT",
    "HASHES",
    "Checkpoint",
    "check_checkpoint",
    "load_checkpoint",
    "load_generator",
    "load_stage",
    "open_generator",
    "params_to_dict",
    "record_hash",
    "save_checkpoint",
    "save_stage",
]

#: Format tag stored in every checkpoint.
FORMAT = "mlegpipe-checkpoint/1"


#: File beside saved stages recording each checkpoint's sha256 (checked on load).
HASHES = "sha256.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the state dict, its metadata and the file's sha256."""

    state: dict[str, Any]
    metadata: dict[str, Any]
    path: Path
    sha256: str = ""

    def provenance(self) -> dict[str, Any]:
        """What files generated from this checkpoint say about it: name, sha256, plugin, training seed and the σ
        of the sample it was trained on (stated as such).

        Example:
            >>> Checkpoint({}, {"plugin": "flow", "seed": 3}, Path("g.pt"), "ab").provenance()["training_seed"]
            3
        """
        from mlegpipe.provenance import cross_section_meta

        meta = self.metadata
        out: dict[str, Any] = {"generator": meta.get("plugin", ""), "checkpoint": self.path.name,
                               "checkpoint_sha256": self.sha256, "training_seed": meta.get("seed"),
                               "trained_with_mlegpipe": meta.get("version")}
        if isinstance(meta.get("beams"), dict):
            out["beams"] = meta["beams"]
        if meta.get("process"):
            out["process"] = meta["process"]
        out.update(cross_section_meta(meta.get("cross_section") or {},
                                      origin="the truth sample the generator was trained on"))
        return out


def _sanitize(value: Any, where: str) -> Any:
    """Turn ``value`` into something ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CheckpointError("object arrays cannot be stored in a checkpoint", path=where)
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str | torch.dtype | torch.device):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"checkpoint keys must be strings or integers, got {type(k).__name__}",
                                      path=f"{where}.{k}")
            out[k] = _sanitize(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        items = [_sanitize(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise CheckpointError(f"a {type(value).__name__} cannot be stored in a checkpoint (only tensors, arrays, "
                          "numbers, strings and lists/dicts of them)", path=where)


def params_to_dict(params: Any) -> dict[str, Any]:
    """A stage's ``Params`` dataclass as a JSON-able dict (tuples become lists).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class P:
        ...     steps: int = 3
        ...     hidden: tuple = (64, 64)
        >>> params_to_dict(P())
        {'steps': 3, 'hidden': [64, 64]}
    """
    if params is None:
        return {}
    raw = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)
    return json.loads(json.dumps(raw))


def save_checkpoint(
    path: str | os.PathLike[str],
    state: Mapping[str, Any],
    *,
    kind: str = "",
    plugin: str = "",
    params: Any = None,
    features: Sequence[str] = (),
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state`` and metadata to ``path`` atomically (temporary file, then rename).

    Arguments:
        path: the checkpoint file; parent folders are created.
        state: tensors, arrays, numbers, strings and nested lists/dicts of them.
        kind, plugin: the stage kind and plugin name (checked on load).
        params: the stage's ``Params`` dataclass (or a dict).
        features: names of the features the model learned (checked on load).
        seed: the pipeline seed.
        extra: further JSON-able metadata (training step, metric, ...).

    Returns:
        The path written.

    Raises:
        CheckpointError: ``state`` holds an object that cannot be stored safely,
            or metadata that is not JSON-able.
    """
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "plugin": plugin,
        "params": params_to_dict(params),
        "features": list(features),
        "version": __version__,
        "torch": torch.__version__,
        "seed": seed,
        **dict(extra or {}),
    }
    try:
        meta_json = json.dumps(metadata)
    except TypeError as err:
        raise CheckpointError(f"checkpoint metadata is not JSON-able: {err}", path=str(path)) from None
    payload = {"format": FORMAT, "metadata_json": meta_json, "state": _sanitize(dict(state), "state")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect_kind: str | None = None,
    expect_plugin: str | None = None,
    expect_features: Sequence[str] | None = None,
) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check what it holds.

    Raises:
        CheckpointError: the file is missing, unreadable, not an mlegpipe
            checkpoint, needs unsafe unpickling, or belongs to another
            kind/plugin/feature set (the message names both).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint: {err.strerror or err}", path=str(path)) from None
    digest = hashlib.sha256(data).hexdigest()
    _check_recorded_hash(path, digest)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError("refusing to load: the file needs unsafe unpickling (it is not a plain dict of "
                              f"tensors; only weights_only loading is allowed): {str(err).splitlines()[0]}",
                              path=str(path)) from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint: {type(err).__name__}: {str(err).splitlines()[0]}",
                              path=str(path)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "metadata_json" not in payload:
        raise CheckpointError(f"not an mlegpipe checkpoint (expected format {FORMAT!r})", path=str(path))
    try:
        metadata = json.loads(payload["metadata_json"])
    except (TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"corrupt checkpoint metadata: {err}", path=str(path)) from None
    ckpt = Checkpoint(payload.get("state", {}), metadata, path, digest)
    check_checkpoint(ckpt, expect_kind=expect_kind, expect_plugin=expect_plugin, expect_features=expect_features)
    return ckpt


def _check_recorded_hash(path: Path, digest: str) -> None:
    """A checkpoint whose run folder recorded another sha256 was changed or replaced: refuse it."""
    record = path.parent / HASHES
    if not record.is_file():
        return
    try:
        recorded = json.loads(record.read_text(encoding="utf-8")).get(path.name)
    except (OSError, ValueError, AttributeError):
        raise CheckpointError("the run folder's checkpoint hash record is unreadable", path=str(record)) from None
    if recorded is not None and recorded != digest:
        raise CheckpointError(f"the file's sha256 {digest[:12]}... does not match the {recorded[:12]}... that the run "
                              f"recorded in {record}: it was changed or replaced after training", path=str(path))


def record_hash(path: str | os.PathLike[str]) -> str:
    """Record ``path``'s sha256 in the :data:`HASHES` file beside it (checked whenever it is loaded); return it.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "g.pt"
        >>> _ = p.write_bytes(b"x")
        >>> record_hash(p)[:8], sorted(json.loads((p.parent / HASHES).read_text()))
        ('2d711642', ['g.pt'])
    """
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record = path.parent / HASHES
    try:
        hashes = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except (OSError, ValueError):
        hashes = {}
    hashes[path.name] = digest
    tmp = record.with_name(f".{HASHES}.tmp")
    tmp.write_text(json.dumps(hashes, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, record)
    return digest


def check_checkpoint(
    ckpt: Checkpoint,
    *,
    expect_kind: str | None = None,
    expect_plugin: str | None = None,
    expect_features: Sequence[str] | None = None,
) -> None:
    """Raise :class:`CheckpointError` if ``ckpt`` does not hold what is expected."""
    meta = ckpt.metadata
    if expect_kind is not None and meta.get("kind") != expect_kind:
        raise CheckpointError(f"checkpoint holds a {meta.get('kind')!r} stage, expected a {expect_kind!r} stage",
                              path=str(ckpt.path))
    if expect_plugin is not None and meta.get("plugin") != expect_plugin:
        raise CheckpointError(f"checkpoint was written by plugin {meta.get('plugin')!r}, expected plugin "
                              f"{expect_plugin!r}", path=str(ckpt.path))
    if expect_features is not None and list(meta.get("features", [])) != list(expect_features):
        raise CheckpointError(f"checkpoint features {meta.get('features')} do not match the expected features "
                              f"{list(expect_features)}", path=str(ckpt.path))


def save_stage(path: str | os.PathLike[str], stage: Stage, seed: int | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Save a trainable stage: ``stage.state_dict()`` plus its kind, plugin, params and features.

    Example:
        >>> # save_stage(run_dir / "generator.pt", flow_generator, seed=42)
    """
    written = save_checkpoint(path, stage.state_dict(), kind=stage.kind, plugin=stage.plugin_name,
                              params=stage.params, features=list(getattr(stage, "features", []) or []),
                              seed=seed if seed is not None else stage.ctx.seed, extra=extra)
    record_hash(written)
    return written


def load_stage(
    path: str | os.PathLike[str] | Checkpoint,
    registry: StageRegistry,
    kind: str,
    ctx: StageContext | None = None,
    expect_plugin: str | None = None,
    expect_features: Sequence[str] | None = None,
) -> Stage:
    """Rebuild a stage of ``kind`` from the registry and the checkpoint's params, then load its state.

    Raises:
        CheckpointError: wrong kind/plugin/features, invalid stored params, or a
            state the stage refuses.
    """
    from mlegpipe.schema import build_params

    if isinstance(path, Checkpoint):
        ckpt = path
        check_checkpoint(ckpt, expect_kind=kind, expect_plugin=expect_plugin)
        path = ckpt.path
    else:
        ckpt = load_checkpoint(path, expect_kind=kind, expect_plugin=expect_plugin)
    meta = ckpt.metadata
    info = registry.get(kind, meta.get("plugin", ""), path=f"{path}: plugin")
    try:
        params = build_params(info.cls.Params, meta.get("params", {}), f"{path}: params")
    except ConfigError as err:
        raise CheckpointError(f"stored parameters do not fit plugin {info.name!r} any more: {err}",
                              path=str(path)) from None
    stage = info.cls(params, ctx or StageContext(kind, seed=int(meta.get("seed") or 0)))
    stage.load_state_dict(ckpt.state)
    features = list(getattr(stage, "features", meta.get("features", [])) or [])
    if features != list(meta.get("features", [])):
        raise CheckpointError(f"plugin {info.name!r} rebuilt with features {features}, but the checkpoint holds "
                              f"features {meta.get('features')}", path=str(path))
    if expect_features is not None and features != list(expect_features):
        raise CheckpointError(f"checkpoint features {features} do not match the expected features "
                              f"{list(expect_features)}", path=str(path))
    return stage


def open_generator(
    path: str | os.PathLike[str],
    registry: StageRegistry,
    ctx: StageContext | None = None,
) -> tuple[Generator, dict[str, Any]]:
    """A trained generator and the provenance its events should carry (:meth:`Checkpoint.provenance`).

    Example:
        >>> # gen, provenance = open_generator("runs/hera/checkpoints/generator.pt", load_plugins())
    """
    ckpt = load_checkpoint(path, expect_kind="generator")
    return load_stage(ckpt, registry, "generator", ctx), ckpt.provenance()  # type: ignore[return-value]


def load_generator(
    path: str | os.PathLike[str],
    registry: StageRegistry,
    ctx: StageContext | None = None,
    expect_plugin: str | None = None,
    expect_features: Sequence[str] | None = None,
) -> Generator:
    """Rebuild a trained generator from a checkpoint written by :func:`save_stage`.

    Example:
        >>> # gen = load_generator("runs/hera/generator.pt", load_plugins())
        >>> # events = gen.sample(10_000, np.random.SeedSequence(1))
    """
    return load_stage(path, registry, "generator", ctx, expect_plugin, expect_features)  # type: ignore[return-value]
