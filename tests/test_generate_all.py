"""``mlegpipe generate`` for every non-flow generator: fatgan, cfatgan (unseen energy), lsgan, dsgan, bvae.

Each generator is trained for a few steps on toy DIS leptons at the symmetric
50 × 50 GeV collider, saved with :func:`~mlegpipe.checkpoint.save_stage`, and
sampled through the command line. The tests check the event count, the
kinematic limits (the rejecting generators must return only physical events;
DS-GAN, which does not reject, must report its violation fraction exactly),
and that the seed alone sets the events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dis_leptons import dis_events

from mlegpipe.beams import Beams
from mlegpipe.checkpoint import load_generator, save_stage
from mlegpipe.cli import main
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.generation import generate_blocks
from mlegpipe.physicality import physicality
from mlegpipe.registry import load_plugins
from mlegpipe.rootio import read_events
from mlegpipe.schema import build_params
from mlegpipe_builtins.dis.physicality import energy_limit_applies

SYM50 = Beams.preset("sym50")
N_EVENTS = 3000
GAN_TINY = {"layers": 2, "width": 32, "noise_dim": 8, "batch_size": 256, "critic_steps": 1, "validate_every": 0,
            "steps": 20}
#: plugin → (parameters, condition given to ``mlegpipe generate``)
CASES: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "fatgan": (GAN_TINY, {}),
    "cfatgan": (GAN_TINY, {"beam_energy": 25.0}),  # trained at 10, 20, 30 GeV: 25 GeV is unseen
    "lsgan": (GAN_TINY, {}),
    "dsgan": (GAN_TINY, {}),
    "bvae": ({"layers": 2, "width": 32, "latent": 4, "batch_size": 256, "validate_every": 0, "steps": 30}, {}),
}


def _training_data(plugin: str) -> tuple[EventBatch, EventBatch]:
    if plugin == "cfatgan":
        train = EventBatch.concat([dis_events(1500, SYM50, s, e) for s, e in ((0, 10.0), (1, 20.0), (2, 30.0))])
        valid = EventBatch.concat([dis_events(300, SYM50, s, e) for s, e in ((3, 10.0), (4, 20.0), (5, 30.0))])
        return train, valid
    return dis_events(3000, SYM50, 0), dis_events(500, SYM50, 1)


@pytest.fixture(scope="module", params=list(CASES))
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A generator trained for a few steps and saved as a weights-only checkpoint."""
    plugin = request.param
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        registry = load_plugins(strict=True)
        cls = registry.get("generator", plugin).cls
        params = build_params(cls.Params, dict(CASES[plugin][0]), "generator")
        gen = cls(params, StageContext("generator", seed=3))
        gen.fit(*_training_data(plugin))
        return plugin, save_stage(tmp_path_factory.mktemp(plugin) / f"{plugin}.pt", gen)
    finally:
        torch.set_num_threads(before)


def _generate(ckpt: Path, out: Path, seed: int, conditions: dict[str, float]) -> EventBatch:
    args = ["generate", str(ckpt), "-n", str(N_EVENTS), "-o", str(out), "--seed", str(seed), "--no-progress"]
    for name, value in conditions.items():
        args += ["--condition", f"{name}={value}"]
    assert main(args) == 0
    return EventBatch.concat(list(read_events(out)))


def test_generate_writes_the_events_within_the_limits(checkpoint: tuple[str, Path], tmp_path: Path) -> None:
    plugin, ckpt = checkpoint
    conditions = CASES[plugin][1]
    events = _generate(ckpt, tmp_path / "a.root", 5, conditions)
    assert len(events) == N_EVENTS
    for field in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz"):
        assert np.isfinite(events.column(field)).all()
    e_beam = conditions.get("beam_energy", SYM50.lepton_energy)
    if conditions:
        np.testing.assert_array_equal(events.column("beam_energy"), e_beam)
        assert events.beams.lepton_energy == e_beam
    phys = physicality(events)
    if plugin == "dsgan":
        # DS-GAN does not reject: the fraction beyond the limits it reports is the one written to the file
        gen = load_generator(ckpt, load_plugins())
        for _ in generate_blocks(gen, N_EVENTS, 5, conditions):
            pass
        assert gen.info()["unphysical_fraction"] == pytest.approx(phys["unphysical"], abs=1e-12)
    else:
        assert phys["unphysical"] == 0.0, phys
        assert (events.column("lepton_pz") < e_beam).all()
        if energy_limit_applies(events.beams):  # E' ≤ E_b at symmetric beams
            assert (events.column("lepton_E") <= e_beam * (1 + 1e-6)).all()


def test_generate_is_reproducible_by_seed(checkpoint: tuple[str, Path], tmp_path: Path) -> None:
    plugin, ckpt = checkpoint
    conditions = CASES[plugin][1]
    a = _generate(ckpt, tmp_path / "a.root", 11, conditions)
    b = _generate(ckpt, tmp_path / "b.root", 11, conditions)
    c = _generate(ckpt, tmp_path / "c.root", 12, conditions)
    for field in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz"):
        np.testing.assert_array_equal(a.column(field), b.column(field))
    assert not np.array_equal(a.column("lepton_px"), c.column("lepton_px"))
