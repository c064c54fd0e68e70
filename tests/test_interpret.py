"""Tests of model interpretation: activation hooks, 2D maps with separability, DBSCAN, layer maps and figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features import Standardize
from mlegpipe.interpret.activations import hidden_layer_names, record_activations, resolve_layers
from mlegpipe.interpret.embed import chance_level, cluster, embed, region_labels, separability
from mlegpipe.interpret.maps import generator_layer_maps
from mlegpipe.interpret.plots import plot_layer_maps
from mlegpipe.nets import ResidualLayer, mlp
from mlegpipe.plots import png_bytes
from mlegpipe.stages import Generator, NetworkProbe

TRAINED = [10.0, 20.0, 30.0, 40.0, 50.0]


class ConditionalToy(Generator):
    """A tiny conditional generator: noise (4) + standardized beam energy → (E'/E_b-like, E_b-scaled) pair.

    Trained so its outputs scale with the beam energy, as a cFAT-GAN's lepton
    energy does; interpreted through the contract any generator implements
    (:meth:`~mlegpipe.stages.Generator.network_probe`), decoding to events with fields ``a`` and ``b``.
    """

    plugin_name = "toy"
    conditions = ["beam_energy"]

    def __init__(self, seed: int = 0, steps: int = 300) -> None:
        super().__init__(None, None)
        torch.manual_seed(seed)
        self.network = mlp(5, 2, [32, 32, 32])
        self.cond_scaler = Standardize().fit(torch.tensor(TRAINED, dtype=torch.float64)[:, None])
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.network.parameters(), lr=3e-3)
        for _ in range(steps):
            eb = torch.tensor(TRAINED)[torch.randint(0, 5, (256,), generator=gen)][:, None]
            noise = self.noise(256, gen)
            target = torch.cat([eb / 10.0 * (1 + 0.1 * noise[:, :1]), eb / 10.0 * noise[:, 1:2]], dim=1)
            cond = self.cond_scaler.transform(eb.double()).float()
            opt.zero_grad()
            nn.functional.mse_loss(self.network(torch.cat([noise, cond], 1)), target).backward()
            opt.step()
        self.network.eval()

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 4, generator=generator)

    def network_probe(self) -> NetworkProbe:
        def inputs(n: int, values: dict | None, gen: torch.Generator) -> list[torch.Tensor]:
            eb = torch.full((n, 1), float(values["beam_energy"]), dtype=torch.float64)
            return [self.noise(n, gen), self.cond_scaler.transform(eb).float()]

        def forward(*tensors: torch.Tensor) -> torch.Tensor:
            return self.network(torch.cat(tensors, dim=1))

        def decode(tensors: list[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            with torch.no_grad():
                out = forward(*tensors).double().numpy()
            return EventBatch.from_columns({"a": out[:, 0], "b": out[:, 1]})

        return NetworkProbe(self.network, "network", inputs, forward, decode, list(self.conditions))


@pytest.fixture(scope="module")
def toy() -> ConditionalToy:
    return ConditionalToy()


# -- activations -----------------------------------------------------------------------------------------
def test_hidden_layers_of_plain_residual_and_spectral_networks():
    assert hidden_layer_names(mlp(3, 1, [8, 8, 8])) == ["1", "3", "5"]
    res = mlp(3, 1, [8, 8, 8], residual=True)
    assert hidden_layer_names(res) == ["1", "2", "3"]
    assert isinstance(res[2], ResidualLayer)
    assert hidden_layer_names(mlp(3, 1, [8, 8], norm="spectral", output_activation="tanh")) == ["1", "3"]
    assert hidden_layer_names(mlp(3, 1, [8, 8], dropout=0.1)) == ["1", "4"]


def test_resolve_layers_by_number_and_name_and_errors_name_the_layers():
    net = mlp(3, 1, [8, 8, 8])
    assert resolve_layers(net, [1, "2", -1, "-2"]) == ["1", "3", "5", "3"]  # digit strings are numbers
    wrapped = nn.Sequential()
    wrapped.add_module("body", net)
    assert resolve_layers(wrapped, ["body.3"]) == ["body.3"]  # other strings are module names
    with pytest.raises(ConfigError, match=r"3 hidden layers .*\['1', '3', '5'\]"):
        resolve_layers(net, [4], path="interpret.layers")
    with pytest.raises(ConfigError, match="no hidden layer or module"):
        resolve_layers(net, ["encoder"])


def test_recorded_activations_equal_the_layer_outputs_and_hooks_are_removed():
    torch.manual_seed(0)
    net = mlp(3, 2, [6, 5], activation="tanh")
    net.train()
    x = torch.randn(50, 3)
    acts = record_activations(net, x, ["1", "3"], batch_size=7)  # several batches
    with torch.no_grad():
        h1 = torch.tanh(net[0](x))
        h2 = torch.tanh(net[2](h1))
    np.testing.assert_allclose(acts["1"], h1.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(acts["3"], h2.numpy(), rtol=1e-6, atol=1e-6)
    assert all(not m._forward_hooks for m in net.modules())
    assert net.training


def test_several_input_tensors_go_through_a_custom_forward():
    net = mlp(5, 1, [4])
    noise, cond = torch.randn(20, 4), torch.ones(20, 1)
    acts = record_activations(net, [noise, cond], ["1"], forward=lambda a, b: net(torch.cat([a, b], 1)))
    with torch.no_grad():
        expected = net[1](net[0](torch.cat([noise, cond], 1)))
    np.testing.assert_allclose(acts["1"], expected.numpy(), rtol=1e-6)


# -- maps and scores ---------------------------------------------------------------------------------------
def test_separability_known_answers():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    apart = rng.normal(size=(300, 2)) * 0.1 + np.c_[labels, labels ** 2]
    mixed = rng.normal(size=(300, 2))
    assert separability(apart, labels) == pytest.approx(1.0)
    assert chance_level(labels) == pytest.approx(1 / 3)
    assert abs(separability(mixed, labels) - 1 / 3) < 0.12  # no information: about chance
    with pytest.raises(DataError, match="two different labels"):
        separability(apart, np.zeros(300))
    with pytest.raises(DataError, match="300 map points but 3 labels"):
        separability(apart, [0, 1, 2])


def test_pca_fitted_on_a_reference_projects_other_points():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    emb = embed(np.r_[ref[:10]], "pca", fit_on=ref)
    assert emb.explained_variance[0] > 0.8
    np.testing.assert_allclose(emb.transform(ref[:10]), emb.coords)
    with pytest.raises(ConfigError, match="fit_on works only with PCA"):
        embed(ref, "tsne", fit_on=ref)
    with pytest.raises(ConfigError, match="unknown embedding method"):
        embed(ref, "isomap")
    with pytest.raises(DataError, match="NaN"):
        embed(np.full((5, 3), np.nan))


def test_umap_is_optional_with_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(ConfigError, match="pip install umap-learn"):
        embed(np.random.default_rng(0).normal(size=(20, 3)), "umap")


def test_umap_maps_separate_islands_reproducibly():
    pytest.importorskip("umap", reason="umap-learn (the optional extra 'umap') is not installed")
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 80)
    x = rng.normal(size=(240, 16)) + 2.0 * labels[:, None]
    a, b = embed(x, "umap", seed=3), embed(x, "umap", seed=3)
    assert a.coords.shape == (240, 2) and a.method == "umap"
    np.testing.assert_array_equal(a.coords, b.coords)
    assert separability(a.coords, labels) > 0.95  # chance 1/3
    with pytest.raises(ConfigError, match="only PCA maps"):
        a.transform(x)


def test_dbscan_finds_the_islands_and_regions_split_by_quantile():
    rng = np.random.default_rng(2)
    pts = np.r_[rng.normal(0, 0.1, (60, 2)), rng.normal(5, 0.1, (60, 2)), rng.normal((0, 5), 0.1, (60, 2))]
    labels = cluster(pts, eps=0.3, min_samples=10)
    assert len(set(labels.tolist()) - {-1}) == 3
    w2 = rng.uniform(4, 100, 1000)
    regions, names = region_labels(w2, 4, "W2")
    assert np.bincount(regions).tolist() == [250, 250, 250, 250]
    assert names[0].startswith("W2 <") and names[-1].startswith("W2 ≥")


# -- a conditional model -------------------------------------------------------------------------------------
def test_pca_and_tsne_maps_of_a_conditional_model_separate_its_beam_energies(toy):
    maps = generator_layer_maps(toy, [1, -1], TRAINED, extrapolated=[60.0], events_per_value=150,
                                method="pca", seed=0)
    # the toy's outputs scale with the energy, so even fresh noise at each energy separates them
    maps_independent = generator_layer_maps(toy, [1, -1], TRAINED, extrapolated=[60.0], events_per_value=150,
                                            method="pca", seed=0, view="independent")
    assert [m.layer for m in maps] == ["1", "5"]
    for m in [*maps, *maps_independent]:
        assert m.coords.shape == (900, 2)
        assert m.chance == pytest.approx(1 / 6)
        assert m.separability > 0.7, m.summary()  # well above chance (0.17)
        shuffled = np.random.default_rng(0).permutation(m.labels)
        assert separability(m.coords, shuffled) < 0.3  # the score needs the real labels
    # the extrapolated 60 GeV points continue the progression: their centre is nearest to 50 GeV's
    first = maps[0]
    centres = {e: first.coords[first.labels == e].mean(axis=0) for e in [*TRAINED, 60.0]}
    nearest = min(TRAINED, key=lambda e: np.linalg.norm(centres[e] - centres[60.0]))
    assert nearest == 50.0
    # t-SNE (fewer points and iterations to stay fast)
    probe_maps = generator_layer_maps(toy, [1], TRAINED, events_per_value=60, method="tsne", seed=1,
                                      perplexity=20)
    assert probe_maps[0].separability > 0.5  # chance 0.2 (measured 0.72)


def test_layer_maps_are_reproducible_and_bad_requests_are_config_errors(toy):
    a = generator_layer_maps(toy, [2], TRAINED[:2], events_per_value=40, method="pca", seed=3)[0]
    b = generator_layer_maps(toy, [2], TRAINED[:2], events_per_value=40, method="pca", seed=3)[0]
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.color_by == "beam_energy" and a.view == "response"  # the default: the first condition
    with pytest.raises(ConfigError, match="conditional on 'beam_energy'"):
        generator_layer_maps(toy, [1], None, method="pca")
    # a colouring that is neither a condition nor an observable of the generated events: named, with what is there
    with pytest.raises(ConfigError, match="unknown colouring") as err:
        generator_layer_maps(toy, [1], TRAINED, events_per_value=20, method="pca", color_by="W2")
    assert err.value.value == "W2" and "color_by" in str(err.value)
    assert "available: condition, beam_energy, a, b" in str(err.value)
    with pytest.raises(ConfigError, match="not a condition held fixed"):
        generator_layer_maps(toy, [1], TRAINED, events_per_value=20, method="pca", conditions={"sqrt_s": 1.0})
    # layers beyond the depth are dropped (a 3-layer model asked for the thesis' 2, 5 and last)
    assert [m.layer for m in generator_layer_maps(toy, [2, 5, -1], TRAINED[:2], events_per_value=20,
                                                  method="pca")] == ["3", "5"]


def test_maps_are_coloured_by_any_observable_of_the_generated_events(toy):
    """The toy's first output grows with the beam energy: regions of it separate on the energy-fed layers."""
    by_a = generator_layer_maps(toy, [-1], TRAINED, events_per_value=60, method="pca", color_by="a", regions=3)[0]
    assert by_a.view == "independent" and by_a.color_by == "a" and by_a.label_names[0].startswith("a <")
    assert np.bincount(by_a.labels.astype(int)).tolist() == [100, 100, 100]
    assert by_a.separability_full > 0.7 and by_a.chance == pytest.approx(1 / 3)
    # 'condition' names the first condition, whatever it is called
    by_condition = generator_layer_maps(toy, [1], TRAINED[:2], events_per_value=30, method="pca",
                                        color_by="condition")[0]
    assert by_condition.color_by == "beam_energy" and set(by_condition.labels.tolist()) == set(TRAINED[:2])


def test_generators_without_a_network_give_a_clear_error():
    from mlegpipe.interpret.probes import generator_probe

    class NoNet:
        plugin_name = "histogram"

    class Histogram(Generator):  # keeps the default network_probe
        plugin_name = "histogram"

    with pytest.raises(ConfigError, match="exposes no torch network"):
        generator_probe(NoNet())
    with pytest.raises(ConfigError, match="'histogram' exposes no torch network .*network_probe"):
        generator_probe(Histogram(None, None))


def test_layer_map_figure_with_clusters(toy):
    maps = generator_layer_maps(toy, [1, 2], TRAINED, extrapolated=[60.0], events_per_value=60, method="pca",
                                cluster_eps=0.3, cluster_min_samples=10)
    assert maps[0].clusters is not None and maps[0].summary()["clusters"] >= 1
    fig = plot_layer_maps(maps, title="toy")
    assert png_bytes(fig)[:4] == b"\x89PNG"


# -- a real run folder: cfatgan on a mixed-energy sample, through the command line -------------------------------
def make_run(tmp_path, name: str = "cfat", steps: int = 40, extra: str = ""):  # noqa: ANN201
    """Run a tiny cFAT-GAN pipeline on 3000 events of the multi-energy sample (10-50 GeV); return the folder."""
    from pathlib import Path

    from mlegpipe.cli import main
    from mlegpipe.interpret.runs import read_sample
    from mlegpipe.rootio import write_events

    source = Path(__file__).resolve().parents[1] / "sample_data" / "sym_multienergy_train.root"
    if not source.is_file():
        pytest.skip("sample_data/sym_multienergy_train.root is missing")
    events = read_sample(source)
    mixed = events.take(np.sort(np.random.default_rng(0).choice(len(events), 3000, replace=False)))
    write_events(tmp_path / "mixed.root", mixed, meta={"beams": mixed.beams.to_dict()})
    toml = tmp_path / f"{name}.toml"
    toml.write_text(f"""
[pipeline]
name = "{name}"
seed = 3
threads = 1
output = "{tmp_path.as_posix()}/{{name}}"

[truth]
plugin = "root"
files = ["{(tmp_path / 'mixed.root').as_posix()}"]

[generator]
plugin = "cfatgan"
layers = 3
width = 32
noise_dim = 8
batch_size = 256
critic_steps = 2
steps = {steps}
validate_every = 0
checkpoint_every = {steps}
{extra}
""", encoding="utf-8")
    assert main(["-q", "run", str(toml)]) == 0
    return tmp_path / name


@pytest.fixture(scope="module")
def cfat_run(tmp_path_factory):  # noqa: ANN201
    return make_run(tmp_path_factory.mktemp("interpret"))


def test_interpret_command_writes_the_maps_of_generator_and_discriminator(cfat_run, capsys):
    import json

    from mlegpipe.cli import main

    code = main(["-q", "interpret", str(cfat_run), "--method", "pca", "--events", "60", "--layers", "1", "-1",
                 "--disc-events", "250", "--disc-energies", "10", "50"])
    assert code == 0
    out = capsys.readouterr().out
    assert "separability" in out and "truth vs generated" in out
    plots = cfat_run / "plots"
    for name in ("interpret_generator_pca.png", "interpret_discriminator_pca.png"):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((plots / "interpret.json").read_text())
    assert summary["condition"] == "beam_energy" and summary["values"] == TRAINED
    assert summary["extrapolated"] == [60.0]  # one step beyond 50 GeV
    assert [m["layer"] for m in summary["generator_maps"]] == ["1", "5"]
    assert all(m["view"] == "response" and m["separability"] > 0.5 for m in summary["generator_maps"])
    disc = summary["discriminator_maps"]
    assert [d["value"] for d in disc] == [10.0, 50.0] and all(d["regime"] == "trained" for d in disc)
    assert all(0.0 <= d["separability"] <= 1.0 and d["truth_events"] > 50 for d in disc)
    # a chosen view gets its own figure
    assert main(["-q", "interpret", str(cfat_run), "--method", "pca", "--events", "30", "--layers", "1",
                 "--view", "independent", "--no-discriminator"]) == 0
    assert (plots / "interpret_generator_pca_independent.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((plots / "interpret.json").read_text())["generator_maps"][0]["view"] == "independent"


def test_interpret_command_errors_are_short_and_name_the_input(cfat_run, tmp_path, capsys):
    from mlegpipe.cli import main

    assert main(["interpret", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["interpret", str(cfat_run), "--section", "gen2", "--method", "pca"]) == 2
    assert "gen2" in capsys.readouterr().err
    assert main(["interpret", str(cfat_run), "--layers", "0", "--method", "pca", "--no-discriminator"]) == 2
    assert "hidden layers" in capsys.readouterr().err
    # --color-by takes any name; one that is not there is an error (exit 2) naming it and what is there
    assert main(["interpret", str(cfat_run), "--color-by", "Q3", "--method", "pca", "--events", "20",
                 "--layers", "1", "--no-discriminator"]) == 2
    err = capsys.readouterr().err
    assert "Q3" in err and "Q2" in err and "condition" in err


def test_discriminator_is_looked_into_from_the_training_checkpoint(cfat_run):
    from mlegpipe.interpret.maps import discriminator_maps
    from mlegpipe.interpret.runs import open_run

    models = open_run(cfat_run)
    net = models.discriminator_net()
    truth = models.sample("truth_test")
    maps = discriminator_maps(models.generator, net, truth, None, [30.0], trained=[10.0, 50.0], events=300)
    assert maps[0].regime == "interpolated" and maps[0].truth.shape[1] == 2
    assert sum(maps[0].explained_variance) <= 1.0
    # fed twice the same events, the discriminator cannot tell them apart: the score drops to about chance
    same = discriminator_maps(models.generator, net, truth, truth, [30.0], events=300)[0]
    np.testing.assert_allclose(same.truth, same.generated, atol=1e-4)
    assert same.separability < 0.7 < 1.0


def test_a_trained_cfatgan_separates_its_beam_energies_in_the_response_view(cfat_run):
    """The real model (3×32 cFAT-GAN trained on 10-50 GeV events): the same noise at 6 energies, chance 1/6."""
    import copy

    gen = open_run_generator(cfat_run)
    maps = generator_layer_maps(gen, [1, -1], TRAINED, [60.0], events_per_value=100, method="pca", seed=0)
    assert [m.view for m in maps] == ["response", "response"]  # the default for energy colouring
    for m in maps:
        assert m.chance == pytest.approx(1 / 6)
        assert m.separability > 0.6, m.summary()  # measured 0.95 and 0.87
        assert m.ordering > 0.9, m.summary()  # the first component orders the energies (measured 0.98)
        assert separability(m.coords, np.random.default_rng(0).permutation(m.labels)) < 0.3
    centres = {e: maps[0].coords[maps[0].labels == e].mean(axis=0) for e in [*TRAINED, 60.0]}
    assert min(TRAINED, key=lambda e: np.linalg.norm(centres[e] - centres[60.0])) == 50.0
    # fresh noise at each energy: the noise dominates and the energies overlap (measured 0.29 and 0.21)
    independent = generator_layer_maps(gen, [1, -1], TRAINED, [60.0], events_per_value=100, method="pca",
                                       view="independent")
    assert all(i.separability < r.separability - 0.3 for i, r in zip(independent, maps, strict=True))
    assert all(0.0 < m.condition_fraction < 0.5 for m in independent)
    # the score fails where it should: cut the energy input and the response view sees nothing
    blind = copy.deepcopy(gen)
    with torch.no_grad():
        blind.network[0].weight[:, -1] = 0.0  # the standardized beam energy is the last input
    for m in generator_layer_maps(blind, [1, -1], TRAINED, [60.0], events_per_value=100, method="pca"):
        assert m.separability == pytest.approx(m.chance) and m.ordering == 0.0 and m.condition_fraction < 1e-9
    with pytest.raises(ConfigError, match="at least two values"):
        generator_layer_maps(gen, [1], [10.0], events_per_value=20, method="pca", view="shared")
    with pytest.raises(ConfigError, match="unknown view"):
        generator_layer_maps(gen, [1], TRAINED, events_per_value=20, method="pca", view="paired")


def test_gans_expose_what_their_networks_see_through_the_public_interface(cfat_run):
    from mlegpipe.interpret.probes import discriminator_inputs, network_inputs
    from mlegpipe.interpret.runs import open_run
    from mlegpipe.stages import Generator, NetworkInputs

    models = open_run(cfat_run)
    gen, truth = models.generator, models.sample("truth_test")
    inputs = gen.interpretation_inputs(truth)
    assert isinstance(inputs, NetworkInputs) and inputs.features.dtype == torch.float32
    np.testing.assert_array_equal(inputs.context, truth.column("beam_energy"))  # the lepton map's context
    # the condition is ln E_b standardized over the training energies 10-50 GeV (log_condition, the default)
    standardized = inputs.condition.numpy().ravel()
    assert np.corrcoef(standardized, np.log(inputs.context))[0, 1] == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(inputs.condition, gen.condition_tensor(inputs.context))
    geometric_mean = float(np.exp(np.mean(np.log(inputs.context))))  # the test split's: close to training's
    assert abs(float(gen.condition_tensor(np.array([geometric_mean])))) < 0.1
    # the features are the generator's standardized encoding of the events
    torch.testing.assert_close(gen.encode(truth), inputs.features)
    assert discriminator_inputs(gen, truth).shape[1] == gen.discriminator_features(inputs.features).shape[1] + 1
    assert type(models.discriminator).__name__ == type(gen.default_discriminator()).__name__

    class Histogram(Generator):
        plugin_name = "histogram"

    with pytest.raises(ConfigError, match="interpretation_inputs"):
        network_inputs(Histogram(None, None), truth)


def open_run_generator(run):  # noqa: ANN001, ANN201
    from mlegpipe.interpret.runs import open_run

    return open_run(run).generator


def test_maps_coloured_by_w2_regions_of_the_generated_events(cfat_run):
    from mlegpipe.interpret.runs import open_run

    gen = open_run(cfat_run).generator
    maps = generator_layer_maps(gen, [1], [10.0, 50.0], events_per_value=200, method="pca", color_by="W2",
                                regions=4)
    m = maps[0]
    assert m.label_names is not None and m.label_names[0].startswith("W2 <") and m.view == "independent"
    defined = m.labels < 4  # an unphysical event of the tiny GAN has no W2: it would get a region of its own
    counts = np.bincount(m.labels[defined].astype(int), minlength=4)
    assert defined.mean() > 0.5 and counts.max() - counts.min() <= 1  # equally populated regions
    assert 0.0 <= m.separability <= 1.0
    # the probe's events are the GAN's own decoding of the same noise, at the fed beam energy
    probe = gen.network_probe()
    inputs = probe.inputs(50, {"beam_energy": 50.0}, torch.Generator().manual_seed(0))
    events = probe.decode(inputs, np.random.SeedSequence(0))
    with torch.no_grad():
        expected = gen.decode(gen.generate_tensor(*inputs), 50.0, seed=np.random.SeedSequence(0))
    np.testing.assert_allclose(events.column("W2"), expected.column("W2"), rtol=1e-6)
    assert probe.label == "network" and probe.conditions == ["beam_energy"] and probe.loss is None


def test_a_conditional_flow_is_looked_into_through_its_hyper_networks():
    from mlegpipe.context import StageContext
    from mlegpipe.interpret.probes import generator_probe, stage_landscape
    from mlegpipe.schema import build_params
    from mlegpipe_builtins.generators.flow import FlowGenerator

    rng = np.random.default_rng(0)
    energy = np.repeat([10.0, 20.0, 30.0], 600)
    events = EventBatch.from_columns({"a": rng.normal(energy / 10, 0.3), "b": rng.normal(-energy / 10, 0.3),
                                      "beam_energy": energy})
    params = build_params(FlowGenerator.Params, {"feature_map": "columns", "features": ["a", "b"],
                                                 "conditional": True, "steps": 60, "hidden": [16, 16],
                                                 "transforms": 2, "validate_every": 0, "batch_size": 256},
                          "generator")
    flow = FlowGenerator(params, StageContext("generator", seed=0))
    flow.fit(events, events)
    probe = generator_probe(flow)
    assert probe.label == "flows[0]" and probe.conditions == ["beam_energy"] and probe.loss_name == "nll"
    maps = generator_layer_maps(flow, [1, -1], [10.0, 20.0, 30.0], [40.0], events_per_value=100, method="pca")
    assert maps[0].layer == "transform.transforms.0.hyper.1"
    assert all(m.separability > 0.6 for m in maps)  # chance 0.25
    # coloured by the generated a, which follows the beam energy (a ≈ E / 10)
    by_a = generator_layer_maps(flow, [-1], [10.0, 30.0], events_per_value=100, method="pca", color_by="a",
                                regions=2)[0]
    assert by_a.separability_full > 0.65  # chance 0.5 (measured 0.75)
    decoded = probe.decode(probe.inputs(400, {"beam_energy": 30.0}, torch.Generator().manual_seed(1)),
                           np.random.SeedSequence(0))
    assert abs(float(np.mean(decoded.column("a"))) - 3.0) < 0.5
    land = stage_landscape(flow, events, steps=3, events=500)
    assert land.info["loss"] == "nll" and land.values[1, 1] == pytest.approx(land.center, rel=1e-9)
    with torch.no_grad():  # the centre is the flow's own negative log-likelihood of those events
        sel = np.sort(np.random.default_rng(0).choice(len(events), 500, replace=False))
        sub = events.take(sel)
        space = flow.space
        z = space.scaler.transform(space.features(sub)).float()
        c = space.cond_scaler.transform(torch.from_numpy(sub.column("beam_energy"))[:, None]).float()
        nll = -flow.flows[0](c).log_prob(z).mean()
        inputs = flow.interpretation_inputs(sub)  # the public interface gives the same tensors
        torch.testing.assert_close(inputs.features, z)
        torch.testing.assert_close(inputs.condition, c)
        assert not inputs.context.any()  # the columns map has no context
    assert land.center == pytest.approx(float(nll), rel=1e-6)
    with pytest.raises(ConfigError, match="'mmd' loss does not apply .* its losses: auto, nll"):
        stage_landscape(flow, events, "mmd", steps=3, events=100)


# -- any generator on any events ----------------------------------------------------------------------------------
def _two_gaussians(n: int = 3000, seed: int = 0) -> EventBatch:
    """A user's own columns: a ~ N(0, 1), b = a + N(0, 0.5) (no beams, no particles)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return EventBatch.from_columns({"a": a, "b": a + rng.normal(0.0, 0.5, n)})


def test_a_gan_on_a_users_own_columns_is_coloured_by_them():
    from mlegpipe.context import StageContext
    from mlegpipe.interpret.probes import stage_landscape
    from mlegpipe.schema import build_params
    from mlegpipe_builtins.generators.gans import DSGAN

    events = _two_gaussians()
    raw = {"features": ["a", "b"], "steps": 60, "layers": 2, "width": 32, "noise_dim": 4, "batch_size": 256,
           "validate_every": 0}
    gan = DSGAN(build_params(DSGAN.Params, raw, "generator"), StageContext("generator", seed=0))
    gan.fit(events, events)
    m = generator_layer_maps(gan, [1, -1], events_per_value=400, method="pca", color_by="a")[-1]
    assert m.color_by == "a" and m.label_names[0].startswith("a <") and m.chance == pytest.approx(0.25)
    assert np.bincount(m.labels.astype(int)).tolist() == [100, 100, 100, 100]
    # the output a is a linear function of the last hidden layer: its regions are told apart there
    assert m.separability_full > 0.6, m.summary()
    # unconditional: the default colouring is the first observable a report would compare, here a
    default = generator_layer_maps(gan, [1], events_per_value=100, method="pca")[0]
    assert default.color_by == "a" and default.view == "independent"
    with pytest.raises(ConfigError, match="unknown colouring.*available: a, b") as err:
        generator_layer_maps(gan, [1], events_per_value=50, method="pca", color_by="W2")
    assert err.value.value == "W2"
    with pytest.raises(ConfigError, match="not conditional"):
        generator_layer_maps(gan, [1], events_per_value=50, method="pca", color_by="condition")
    with pytest.raises(ConfigError, match="need a conditional model"):
        generator_layer_maps(gan, [1], [1.0, 2.0], events_per_value=50, method="pca")
    land = stage_landscape(gan, events, steps=3, events=200)  # no discriminator network handed over: MMD²
    assert land.info["loss"] == "mmd" and land.values[1, 1] == pytest.approx(land.center, rel=1e-9)


def test_a_flow_on_a_particle_collection_is_interpreted():
    from mlegpipe.context import StageContext
    from mlegpipe.events import particle_lists
    from mlegpipe.schema import build_params
    from mlegpipe_builtins.generators.flow import FlowGenerator

    rng = np.random.default_rng(0)
    n = 2000
    pt = 30.0 * rng.gamma(4.0, 0.25, n)
    eta = rng.normal(0.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    q = particle_lists({"pt": np.stack([pt, 0.5 * pt], 1), "eta": np.stack([eta, -eta + rng.normal(0, 0.3, n)], 1),
                        "phi": np.stack([phi, np.mod(phi + 2 * np.pi, 2 * np.pi) - np.pi], 1),
                        "mass": np.zeros((n, 2))})
    events = EventBatch.from_columns({"q": q})
    params = build_params(FlowGenerator.Params, {"features": ["q"], "steps": 40, "hidden": [16, 16],
                                                 "transforms": 2, "validate_every": 0, "batch_size": 256},
                          "generator")
    flow = FlowGenerator(params, StageContext("generator", seed=0))
    flow.fit(events, events)
    maps = generator_layer_maps(flow, [1, -1], events_per_value=200, method="pca")
    # the multiplicity is fixed (always 2): the default colouring is the first observable that varies
    assert maps[0].color_by == "q1_pt" and len(maps[0].label_names) == 4
    assert all(0.0 <= m.separability <= 1.0 and m.chance == pytest.approx(0.25) for m in maps)
    by_eta = generator_layer_maps(flow, [-1], events_per_value=200, method="pca", color_by="q2_eta", regions=2)[0]
    assert by_eta.label_names[0].startswith("q2_eta <") and by_eta.separability_full > 0.5
    with pytest.raises(ConfigError, match="n_q takes one value on the generated events"):
        generator_layer_maps(flow, [1], events_per_value=50, method="pca", color_by="n_q")
    events_made = flow.network_probe().decode(flow.network_probe().inputs(10, None, torch.Generator()),
                                              np.random.SeedSequence(0))
    assert events_made.multiplicity("q").tolist() == [2] * 10


def test_a_bvae_is_interpreted_through_its_decoder_with_its_own_landscape_loss():
    from mlegpipe.context import StageContext
    from mlegpipe.interpret.probes import stage_landscape
    from mlegpipe.schema import build_params
    from mlegpipe_builtins.generators.bvae import BVAEGenerator

    events = _two_gaussians(2000)
    raw = {"features": ["a", "b"], "steps": 60, "latent": 2, "layers": 2, "width": 16, "batch_size": 256,
           "validate_every": 0}
    vae = BVAEGenerator(build_params(BVAEGenerator.Params, raw, "generator"), StageContext("generator", seed=0))
    vae.fit(events, events)
    probe = vae.network_probe()
    assert probe.label == "vae.decoder" and not probe.conditional and probe.loss_name == "vae"
    maps = generator_layer_maps(vae, [1, -1], events_per_value=300, method="pca", color_by="b")
    assert [m.layer for m in maps] == ["1", "3"] and all(m.color_by == "b" for m in maps)
    assert maps[-1].separability_full > 0.6  # the decoded b is a linear function of the last layer (chance 0.25)
    # the decoded events are like those sample() makes: latent points of the buffer through the decoder
    made = probe.decode(probe.inputs(2000, None, torch.Generator().manual_seed(0)), np.random.SeedSequence(0))
    sampled = vae.sample(2000, np.random.SeedSequence(0))
    for name in ("a", "b"):
        assert abs(np.mean(made.column(name)) - np.mean(sampled.column(name))) < 0.1
    assert abs(np.corrcoef(made.column("a"), made.column("b"))[0, 1]
               - np.corrcoef(sampled.column("a"), sampled.column("b"))[0, 1]) < 0.05
    land = stage_landscape(vae, events, steps=3, events=300)  # the training loss over the decoder's weights
    assert land.info["loss"] == "vae" and land.values[1, 1] == pytest.approx(land.center, rel=1e-9)
    assert land.info["parameters"] == sum(p.numel() for p in vae.vae.decoder.parameters())
    with torch.no_grad():
        x = vae.interpretation_inputs(events.take(np.sort(np.random.default_rng(0).choice(2000, 300, replace=False))))
        assert x.condition is None and x.features.shape == (300, 2)
    with pytest.raises(ConfigError, match="'mmd' loss does not apply to generator 'bvae'; its losses: auto, vae"):
        stage_landscape(vae, events, "mmd", steps=3, events=100)
    with pytest.raises(ConfigError, match="need a conditional model"):
        generator_layer_maps(vae, [1], [1.0], events_per_value=20, method="pca")
    with pytest.raises(ConfigError, match="takes no conditions"):
        probe.inputs(5, {"beam_energy": 1.0}, torch.Generator())
