"""overfeat serve: a repository in a temporary folder, served by the bundled tritonserver."""

from __future__ import annotations

import argparse
import time

from . import args as a
from .triton_repo import add_repository_flags, options


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model with Triton Inference Server on this machine until Ctrl-C")
    add_repository_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--http-port", type=a.positive_int, default=None, help="HTTP port (default: a free one)")
    p.add_argument("--grpc-port", type=a.positive_int, default=None, help="gRPC port (default: a free one)")
    p.add_argument(
        "--triton-env",
        default=None,
        help="the Python environment with nvidia-pytriton and overfeat (default: $OVERFEAT_TRITON_ENV)",
    )
    p.set_defaults(func=run, net="python")


def run(args: argparse.Namespace) -> int:
    from overfeat.fileio import work_dir
    from overfeat.serving.repository import write_repository
    from overfeat.serving.server import Server

    with work_dir("serve") as work:
        repository = write_repository(args.model, work / "repository", options(args))
        print(repository.table())
        server = Server(
            repository.path, work, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, triton_env=args.triton_env
        )
        with server:
            print(f"serving {args.name} (pipeline) and {', '.join(repository.networks)} (network)")
            print(f"  HTTP  http://{server.http_url}/v2/models/{args.name}/infer")
            print(f"  gRPC  {server.grpc_url}")
            print(f"  overfeat infer IMAGE --backend triton --url {server.http_url} --model {repository.networks[0]}")
            print("Ctrl-C (or SIGTERM) stops it")
            while server.alive():
                time.sleep(0.5)
            print(f"tritonserver ended by itself:\n{server.tail()}")
            return 1
