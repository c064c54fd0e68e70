"""``mlegpipe interpret RUN_DIR``: hidden-layer maps of a run's generator and discriminator (thesis Figs. 21-22)."""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["add_parser", "run"]

log = logging.getLogger("mlegpipe.interpret")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    from mlegpipe.cli.generate import _condition

    p = sub.add_parser(
        "interpret", help="2D maps of a trained generator's hidden layers",
        description="Feed the run's generator noise (latent points) at each value of its first condition "
        "(conditional models) and map chosen hidden layers to 2D (t-SNE, PCA or UMAP), coloured by the condition "
        "value or by regions of any observable of the generated events; map a GAN discriminator's last layer for "
        "truth and generated events on the truth's PCA plane. Writes PNGs and interpret.json into RUN_DIR/plots/ "
        "and prints the k-NN separability of each map.")
    p.add_argument("run_dir", help="run folder written by 'mlegpipe run'")
    p.add_argument("--section", help="generator section (default: the first generator)")
    p.add_argument("--layers", nargs="+", default=["2", "5", "-1"], metavar="LAYER",
                   help="hidden layers: numbers from 1 (-1: the last) or module names (default: 2 5 -1; "
                   "layers beyond the depth are skipped)")
    p.add_argument("--method", choices=("tsne", "pca", "umap"), default="tsne", help="2D map (default: tsne)")
    p.add_argument("--color-by", default=None, metavar="NAME",
                   help="label of the points: 'condition' (the first condition's value, e.g. the beam energy) or "
                   "any observable of the generated events (W2, x, Q2, y for DIS; a field; jets1_pt), in equally "
                   "populated regions (default: the condition for conditional models, else the first observable "
                   "a report compares)")
    p.add_argument("--values", "--energies", dest="values", nargs="+", type=float, metavar="VALUE",
                   help="values of the first condition to feed a conditional generator, e.g. beam energies in "
                   "GeV (default: its distinct values in the training sample)")
    p.add_argument("--extrapolate", nargs="*", type=float, metavar="VALUE",
                   help="extra untrained values drawn apart (default: one step beyond the highest trained)")
    p.add_argument("--condition", type=_condition, action="append", default=[], metavar="NAME=VALUE",
                   help="a further condition of the generator, held at this value (models with several conditions)")
    p.add_argument("--events", type=int, default=1000, help="noise vectors per value (default: 1000)")
    p.add_argument("--view", choices=("auto", "response", "shared", "independent"), default="auto",
                   help="conditional models: 'response' feeds the same noise vectors at every value and removes "
                   "each vector's mean activation over the values (how the layer responds to the condition); "
                   "'shared': the same noise, raw activations; 'independent': fresh noise per value (the noise "
                   "dominates). Default auto: response when coloured by the condition, else independent")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default: 30)")
    p.add_argument("--cluster", nargs=2, type=float, metavar=("EPS", "MIN_SAMPLES"),
                   help="DBSCAN clusters of each map (eps in map standard deviations; thesis: 0.5 25)")
    p.add_argument("--truth", help="truth sample for the discriminator map (default: RUN_DIR/truth_test.root)")
    p.add_argument("--disc-values", "--disc-energies", dest="disc_values", nargs="+", type=float, metavar="VALUE",
                   help="condition values of the discriminator panels (default: those of the truth sample, at most 6)")
    p.add_argument("--disc-events", type=int, default=5000, help="events per discriminator panel (default: 5000)")
    p.add_argument("--no-discriminator", action="store_true", help="skip the discriminator map")
    p.add_argument("--seed", type=int, default=0, help="noise, subsampling and embedding seed")
    p.add_argument("-o", "--output", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.set_defaults(func=run)


def _default_extrapolation(trained: list[float]) -> list[float]:
    if len(trained) < 2:
        return []
    ordered = sorted(trained)
    return [ordered[-1] + (ordered[-1] - ordered[-2])]


def run(args: argparse.Namespace) -> int:
    """Make the maps, write the figures and the figures' JSON, print a summary."""
    from pathlib import Path

    import numpy as np

    from mlegpipe.exceptions import CheckpointError, ConfigError
    from mlegpipe.interpret.maps import discriminator_maps, generator_layer_maps
    from mlegpipe.interpret.plots import plot_discriminator_maps, plot_layer_maps
    from mlegpipe.interpret.runs import open_run
    from mlegpipe.plots import save_png

    if args.events < 5:
        raise ConfigError("need at least 5 noise vectors per value", path="--events", value=args.events)
    models = open_run(args.run_dir, args.section)
    out_dir = Path(args.output) if args.output else models.plots_dir
    gen = models.generator
    condition = gen.conditions[0] if gen.conditions else None
    trained = models.training_values() if condition else []
    values = list(args.values) if args.values else trained
    if condition and not values:
        raise ConfigError(f"the generator is conditional on {condition!r}, whose training values are not a short "
                          "list: give the values to feed it", path="--values", value=None)
    extrapolate = (list(args.extrapolate) if args.extrapolate is not None else _default_extrapolation(trained)) \
        if condition else []
    cluster_eps, cluster_min = (args.cluster[0], int(args.cluster[1])) if args.cluster else (None, 25)
    maps = generator_layer_maps(gen, args.layers, values, extrapolate, args.events, args.method, args.color_by,
                                args.seed, args.perplexity, cluster_eps, cluster_min, view=args.view,
                                conditions=dict(args.condition))
    name = gen.plugin_name or models.section
    view = maps[0].view
    fed = ""
    if condition:
        fed = f", {condition} = {', '.join(f'{e:g}' for e in values)}" + (
            f" + {', '.join(f'{e:g}' for e in extrapolate)} extrapolated" if extrapolate else "")
    title = f"{name} generator ({args.method}{', ' + view if view != 'independent' else ''}){fed}"
    suffix = "" if args.view == "auto" else f"_{view}"  # a chosen view gets its own file
    written = [save_png(plot_layer_maps(maps, title), out_dir / f"interpret_generator_{args.method}{suffix}.png")]
    summary: dict = {"run": str(models.run_dir), "section": models.section, "generator": name,
                     "condition": condition, "values": values, "extrapolated": extrapolate,
                     "fixed_conditions": dict(args.condition), "generator_maps": [m.summary() for m in maps]}
    for m in maps:
        extra = "" if m.ordering is None else f", ordering |ρ| {m.ordering:.3f}"
        extra += "" if m.condition_fraction is None else f", {m.color_by} share of variance {m.condition_fraction:.3f}"
        print(f"generator {m.title:<24} {m.method:<5} {m.view:<11} separability {m.separability:.3f} "
              f"(chance {m.chance:.3f}{extra})")
    if models.discriminator is not None and not args.no_discriminator:
        try:
            net = models.discriminator_net()
        except CheckpointError as err:
            log.warning("no discriminator map: %s", err)
        else:
            truth = models.sample(args.truth) if args.truth else models.sample("truth_test")
            disc_values = args.disc_values
            if condition and not disc_values:
                from mlegpipe.observables import values_of

                disc_values = [float(e) for e in np.unique(values_of(truth, condition, "truth"))[:6]]
            dmaps = discriminator_maps(gen, net, truth, None, disc_values, trained, events=args.disc_events,
                                       seed=args.seed)
            written.append(save_png(plot_discriminator_maps(dmaps, title=f"{name} discriminator, last hidden layer"),
                                    out_dir / "interpret_discriminator_pca.png"))
            summary["discriminator_maps"] = [d.summary() for d in dmaps]
            for d in dmaps:
                where = "" if d.value is None else f"{d.condition} = {d.value:g} ({d.regime})"
                print(f"discriminator {where:<28} truth vs generated k-NN accuracy {d.separability:.3f} "
                      f"(chance {d.chance:.3f})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "interpret.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for path in written:
        print(path)
    return 0
