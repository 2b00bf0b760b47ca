"""`make-data`: write a dataset partitioned over clients, one file each (what a job's data_path names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from florist_grpc.cli.options import Output, OutputFormat
from florist_grpc.cli.output import fail, guarded, print_json


@guarded
def make_data(
    out: Annotated[Path, typer.Option(help="Directory to write client0.pt, client1.pt, ... into.")],
    dataset: Annotated[str, typer.Option(help="digits (scikit-learn's 8x8 digits) or synthetic.")] = "digits",
    clients: Annotated[int, typer.Option(help="Number of clients (one file each).")] = 2,
    partition: Annotated[str, typer.Option(help="iid, or dirichlet (label skew per client).")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration: smaller = more skewed.")] = 0.5,
    file_format: Annotated[str, typer.Option("--format", help="pt, npz or csv.")] = "pt",
    image: Annotated[bool, typer.Option("--image", help="digits as [1, 8, 8] images (for CNN).")] = False,
    samples: Annotated[int, typer.Option(help="synthetic: samples per client.")] = 600,
    non_iid: Annotated[bool, typer.Option("--non-iid", help="Same as --partition dirichlet.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model: Annotated[str, typer.Option(help="synthetic: shape the data for this model (MLP or MNIST_CNN).")] = "MLP",
    output: OutputFormat = Output.text,
) -> None:
    """Write a dataset partitioned over clients (one file each); prints one path per client.

    Each file is what one client's data_path in a job names.

    Examples:
      florist-grpc make-data --out data
      florist-grpc make-data --out data --clients 4 --partition dirichlet --alpha 0.3
      florist-grpc make-data --out data --dataset synthetic --model MNIST_CNN --format npz
    """
    from florist_grpc.fl.make_data import FORMATS, SYNTHETIC_SHAPES, write_digits, write_synthetic

    choices = {
        "--dataset": (dataset, ("digits", "synthetic")),
        "--partition": (partition, ("iid", "dirichlet")),
        "--format": (file_format, tuple(FORMATS)),
        "--model": (model, tuple(sorted(SYNTHETIC_SHAPES))),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise fail(f"{flag} must be one of {', '.join(allowed)}, not {value!r}", 2)
    scheme = "dirichlet" if non_iid else partition
    if dataset == "digits":
        paths = write_digits(out, clients, scheme, alpha, seed, image, file_format)
    else:
        paths = write_synthetic(out, clients, samples, scheme == "iid", seed, model, file_format)
    if output == Output.json:
        print_json({"paths": [str(p) for p in paths]})
    else:
        print("\n".join(str(p) for p in paths))
