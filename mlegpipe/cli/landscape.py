"""``mlegpipe landscape RUN_DIR [--compare RUN_DIR2]``: filter-normalized loss landscapes of trained generators."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser(
        "landscape", help="loss landscape of a run's generator (optionally beside another run's)",
        description="Evaluate the loss on a grid around the trained weights along two random directions "
        "rescaled per filter to the weights' norms (Li et al. 2018; thesis §8.3) and plot the contour map and "
        "the 1D slice, side by side for two runs. Writes PNG and landscape.json into RUN_DIR/plots/.")
    p.add_argument("run_dir", help="run folder written by 'mlegpipe run'")
    p.add_argument("--compare", metavar="RUN_DIR2", help="a second run to show beside the first (same grid, "
                   "directions drawn with the same seed)")
    p.add_argument("--section", help="generator section (default: the first generator)")
    p.add_argument("--loss", default="auto", metavar="LOSS",
                   help="the generator's own loss (flow: nll, the negative log-likelihood; bvae: vae, (1 - β)·MSE + "
                   "β·KL over the decoder's weights), or for GANs mmd (MMD² to truth), generator (adversarial loss "
                   "against the frozen discriminator), discriminator (its loss over its own weights, thesis Fig. "
                   "45); auto (default): the own loss, else generator for GANs with a saved discriminator, else mmd")
    p.add_argument("--steps", type=int, default=21, help="grid points per axis (default: 21)")
    p.add_argument("--span", type=float, default=1.0, help="grid half-width in filter-norm units (default: 1)")
    p.add_argument("--events", type=int, default=1024,
                   help="truth events (and noise vectors) in the loss (default: 1024; MMD costs grow as its square)")
    p.add_argument("--truth", help="truth sample (default: each run's truth_test.root)")
    p.add_argument("--seed", type=int, default=0, help="directions, subsampling and noise seed")
    p.add_argument("-o", "--output", help="folder for the PNG (default: RUN_DIR/plots)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute the landscapes, write the figure and JSON, print a summary."""
    import logging
    from pathlib import Path

    from mlegpipe.exceptions import CheckpointError, ConfigError
    from mlegpipe.interpret.plots import plot_landscapes
    from mlegpipe.interpret.probes import stage_landscape
    from mlegpipe.interpret.runs import open_run
    from mlegpipe.plots import save_png

    if args.steps < 2 or args.steps > 101:
        raise ConfigError("grid points per axis must lie in 2..101", path="--steps", value=args.steps)
    if not args.span > 0:
        raise ConfigError("the span must be positive", path="--span", value=args.span)
    progress = logging.getLogger("mlegpipe").getEffectiveLevel() <= logging.INFO
    landscapes = {}
    runs = [open_run(args.run_dir, args.section)]
    if args.compare:
        runs.append(open_run(args.compare, args.section))
    for models in runs:
        gen = models.generator
        net = None
        want_disc = args.loss in ("auto", "generator", "discriminator") and models.discriminator is not None
        if want_disc:
            try:
                net = models.discriminator_net()
            except CheckpointError:
                if args.loss != "auto":
                    raise
        truth = models.sample(args.truth) if args.truth else models.sample("truth_test")
        land = stage_landscape(gen, truth, args.loss, models.discriminator, net, args.steps, args.span,
                               args.events, args.seed, progress)
        key = f"{models.run_dir.name} ({gen.plugin_name})"
        if key in landscapes:
            key = str(models.run_dir)
        landscapes[key] = land
        print(f"{key}: {land.label} at the trained weights {land.center:.5g}, grid min {land.values.min():.5g}, "
              f"max {land.values.max():.5g}, roughness {land.roughness():.4f}, {land.info['seconds']:.1f} s")
    first = runs[0]
    out_dir = Path(args.output) if args.output else first.plots_dir
    stem = "landscape" if len(runs) == 1 else f"landscape_vs_{runs[1].run_dir.name}"
    fig = plot_landscapes(landscapes, title=f"loss landscapes ({args.steps}×{args.steps}, span {args.span:g})")
    path = save_png(fig, out_dir / f"{stem}.png")
    (out_dir / f"{stem}.json").write_text(json.dumps({k: v.to_dict() for k, v in landscapes.items()}, indent=1),
                                          encoding="utf-8")
    print(path)
    return 0
