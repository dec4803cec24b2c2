"""An emulated estate of many accounts for the agents-on-PostgreSQL failover test (issue 20):
`accounts` accounts in two Regions, each place with a function and the queue it consumes, and in
the first account the shop's checkout path (checkout-api -> checkout-fn, orders-fn -> orders-db)
where a connection storm opens and resolves an incident that pages. Written as a fleet file and
a scenario file (simulator/fleet.py, simulator/scenario.py) into a folder of the test's."""

from __future__ import annotations

from pathlib import Path

REGIONS = ("us-east-1", "eu-west-1")
HOME = "123456789012"  # where plain credentials land; the others are reached by AssumeRole


def account_ids(accounts: int) -> list[str]:
    return [HOME, *(f"{300000000000 + i:012d}" for i in range(1, accounts))]


def role_arns(accounts: int) -> list[str]:
    return [f"arn:aws:iam::{a}:role/fleetwatch-reader" for a in account_ids(accounts)]


def write_estate(folder: Path, accounts: int, storm: tuple[str, str] = ("-14m", "-8m")) -> Path:
    """The fleet `estate` and the scenario `estate-storm` in `folder`; returns the scenario's path."""
    ids = account_ids(accounts)
    out = ['name = "estate"', f'description = "{accounts} accounts in {len(REGIONS)} Regions"', ""]
    for n, a in enumerate(ids):
        out += [
            "[[accounts]]",
            f'id = "{a}"',
            f'name = "team-{n:02d}"',
            f"regions = {list(REGIONS)!r}".replace("'", '"'),
            "",
        ]
    out += [
        "[[resources]]",
        'kind = "api"',
        'name = "checkout-api"',
        'type = "REST"',
        'routes = { "POST /checkout" = "checkout-fn" }',
        "rate = 300",
        "latency_ms = 140",
        "",
        "[[resources]]",
        'kind = "lambda"',
        'name = "checkout-fn"',
        "rate = 300",
        "duration_ms = 150",
        'database = "orders-db"',
        "",
        "[[resources]]",
        'kind = "lambda"',
        'name = "orders-fn"',
        "rate = 200",
        "duration_ms = 80",
        'database = "orders-db"',
        "",
        "[[resources]]",
        'kind = "rds"',
        'name = "orders-db"',
        'engine = "postgres"',
        'instance_class = "db.r6g.large"',
        "max_connections = 500",
        "connections = 60",
        "",
    ]
    for n, a in enumerate(ids):
        for region in REGIONS:
            tag = f"{n:02d}-{region}"
            out += [
                "[[resources]]",
                'kind = "lambda"',
                f'name = "worker-{tag}"',
                f'account = "{a}"',
                f'region = "{region}"',
                "rate = 20",
                f'queue = "jobs-{tag}"',
                "",
                "[[resources]]",
                'kind = "sqs"',
                f'name = "jobs-{tag}"',
                f'account = "{a}"',
                f'region = "{region}"',
                "rate = 20",
                f'consumer = "worker-{tag}"',
                "",
            ]
    (folder / "estate.toml").write_text("\n".join(out), encoding="utf-8")
    start, end = storm
    scenario = folder / "estate-storm.toml"
    scenario.write_text(
        f'''name = "estate-storm"
description = "orders-fn scales out, orders-db runs out of connections, checkout fails; the rest is healthy"
fleet = "estate"
seed = 20

[[incidents]]
id = "orders-db-connection-storm"
kind = "connection_exhaustion"
resource = "rds:orders-db"
outcome = "api:checkout-api"
start = "{start}"
end = "{end}"
summary = "checkout API ~12% 5XX; orders-db at 98% of max_connections (500)"
effects = [
  {{ target = "lambda:orders-fn", driver = "invocations", op = "scale", value = 4, ramp = "2m" }},
  {{ target = "lambda:orders-fn", driver = "concurrency", op = "set", value = 600, ramp = "2m" }},
  {{ target = "rds:orders-db", driver = "connections", op = "set", value = 0.98, of = "max_connections", ramp = "2m" }},
  {{ target = "lambda:checkout-fn", driver = "error_rate", op = "set", value = 0.12, from = "+2m" }},
  {{ target = "api:checkout-api", driver = "error5", op = "set", value = 0.12, from = "+2m" }},
]
''',
        encoding="utf-8",
    )
    return scenario


def main(argv: list[str]) -> None:
    """`python -m tests.estate_kit FOLDER ACCOUNTS START ANCHOR`: the estate served on loopback on
    a fake clock at START (the scenario's offsets count from ANCHOR), in a process of its own
    (the emulator's moto backends are per process, and the test's own emulator has its fleet).
    Prints {"endpoint": ...} once provisioned, then serves until killed."""
    import json

    from fleetwatch.clock import FakeClock
    from simulator.cli import start_emulator

    folder, accounts, start, anchor = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    scenario = write_estate(folder, accounts)
    emulator = start_emulator(str(scenario), clock=FakeClock(start), anchor=anchor, fleet_dirs=(folder,))
    print(json.dumps({"endpoint": emulator.endpoint}), flush=True)
    emulator.serve_forever()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
