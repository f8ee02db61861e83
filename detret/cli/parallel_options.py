"""The data-parallel options shared by train-detector, detect, train-retrieval and embed.

Each function returns a fresh ``typer.Option`` for a command's signature; the run itself
goes through Detectron2's ``launch`` (see ``detret.utils.device``).
"""
from __future__ import annotations

import typer


def num_gpus_option():
    return typer.Option(0, min=0, help="Processes per machine (GPUs; on CPUs, gloo processes); 0 or 1: this process.")


def num_machines_option(shared_run_dir: bool):
    return typer.Option(1, min=1, help="Machines taking part (run_dir on a shared filesystem)." if shared_run_dir
                        else "Machines taking part (data-parallel).")


def machine_rank_option():
    return typer.Option(0, min=0, help="This machine's rank.")


def dist_url_option():
    return typer.Option("auto", help="Rendezvous URL of rank 0, e.g. tcp://10.0.0.1:29500.")
