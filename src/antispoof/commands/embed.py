"""`antispoof embed`: cache a frozen encoder's hidden states, for an experiment or a bare encoder.

An experiment (configs/model/<name>.yaml with an `embed` section) gets the very cache its folds
read: its layers, augmented views and their wave chain, seed and quantize setting, edited by the
flags and `key=value` overrides, so a sharded embed followed by `--merge` leaves nothing for
training to encode. A bare encoder (a known name or a local folder) gets every state, no views.
"""
from __future__ import annotations

from antispoof.config import CONFIG_ROOT, ConfigError, data_dir
from antispoof.inference.states import cache_root, embed_dataset, merge_embed_parts


def embed(args) -> None:
    """Dispatch on what --model names: an experiment's config, else an encoder."""
    if (CONFIG_ROOT / "model" / f"{args.model}.yaml").is_file():
        _embed_experiment(args)
    else:
        _embed_encoder(args)


def _embed_experiment(args) -> None:
    from antispoof.train.data import embed_experiment
    from antispoof.train.fold import experiment_config

    extra = [f"output_root={args.output_root}"] if args.output_root else []
    cfg = experiment_config(args.model, args.data, extra + list(args.overrides))
    if cfg.get("embed") is None:
        raise ConfigError(f"configs/model/{args.model}.yaml has no `embed` section (not a frozen-encoder head)")
    e = cfg.embed
    for key, value in (("layers", args.layers), ("batch_seconds", args.batch_seconds), ("quantize", args.quantize)):
        if value is not None:
            e[key] = value
    if args.merge:
        root = cache_root(cfg.data.dir, e.encoder, e.get("quantize", "none"), args.out or e.root, cfg.output_root)
        merge_embed_parts(cfg.data.dir, root, e.views)
        return
    root, _ = embed_experiment(cfg, args.out, device=args.device, force=args.force, shard=args.shard)
    print(root)


def _embed_encoder(args) -> None:
    if args.overrides:
        raise ConfigError(f"{args.overrides[0]!r}: key=value overrides edit an experiment's `embed` section; "
                          f"{args.model} is an encoder, not configs/model/<experiment>.yaml")
    quantize, output_root = args.quantize or "none", args.output_root or "folds"
    data = data_dir(args.data)
    if args.merge:
        merge_embed_parts(data, cache_root(data, args.model, quantize, args.out, output_root))
        return
    root, _ = embed_dataset(data, args.model, args.layers or "all", args.out, output_root,
                            args.batch_seconds or 120.0, 15.0, device=args.device, force=args.force,
                            shard=args.shard, quantize=quantize)
    print(root)
