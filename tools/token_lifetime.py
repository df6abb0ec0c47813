"""What a shorter access-token lifetime costs: ``python tools/token_lifetime.py [N]``.

A client refreshes its access token once per lifetime (``MERCATO_ACCESS_TOKEN_TTL``), so the
cost of a shorter lifetime is refreshes: this measures one (identity embedded on SQLite, over
gRPC as the gateway calls it: look up the refresh token, spend it, store the next, sign a JWT)
and prints what a lifetime costs per thousand signed-in clients. Figures, not a test.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import grpc.aio

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.platform.runtime.system import System
from mercato.platform.settings import Settings
from mercato.services.identity.service import service as identity

LIFETIMES = (900, 300, 120, 60)
SESSIONS = 1000


async def measure(rounds: int) -> tuple[float, float]:
    """Seconds of wall time and of this process's CPU per refresh."""
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            data_dir=Path(data),
            demo_catalog=False,
            log_level="warning",
            admin_email="root@bench.example",
            admin_password="bench-pass-42",
        )
        system = System([identity], settings)
        async with system.running():
            async with grpc.aio.insecure_channel(system.grpc_targets["identity"]) as channel:
                stub = IdentityStub(channel)
                login = pb.LoginRequest(email="root@bench.example", password="bench-pass-42")
                token = (await stub.Login(login)).refresh_token
                for _ in range(20):  # warm up
                    token = (
                        await stub.Refresh(pb.RefreshRequest(refresh_token=token))
                    ).refresh_token
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(rounds):
                    token = (
                        await stub.Refresh(pb.RefreshRequest(refresh_token=token))
                    ).refresh_token
                return (
                    (time.perf_counter() - wall) / rounds,
                    (time.process_time() - cpu) / rounds,
                )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    wall, cpu = asyncio.run(measure(rounds))
    print(f"one refresh: {wall * 1e3:.2f} ms wall, {cpu * 1e3:.2f} ms CPU ({rounds} in a row)")
    print(f"per {SESSIONS} signed-in clients:")
    print("  lifetime   refreshes/s   CPU of one core")
    for ttl in LIFETIMES:
        rate = SESSIONS / ttl
        print(f"  {ttl:>6} s   {rate:>11.2f}   {rate * cpu * 100:>13.2f} %")


if __name__ == "__main__":
    main()
