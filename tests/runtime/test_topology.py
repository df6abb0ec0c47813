"""Which services ``mercato up --processes`` runs in which process (``--group``, ``--replicas``)."""

from __future__ import annotations

import pytest
import structlog
from typer.testing import CliRunner

from mercato.cli.main import app
from mercato.cli.run import own_ports
from mercato.services import BadTopology, ordered_names, process_plan


def test_by_default_every_service_is_a_process_of_its_own_in_start_order() -> None:
    assert process_plan() == [(name,) for name in ordered_names()]


def test_a_group_is_one_process_and_replicas_are_processes_of_their_own() -> None:
    plan = process_plan(["gateway, cart,catalog"], {"payment": 2})
    assert ("catalog", "cart", "gateway") in plan  # in start order within the process
    assert plan.count(("payment",)) == 2
    assert sorted(n for names in plan for n in names) == sorted([*ordered_names(), "payment"])
    # Processes start in the order of the first service each runs.
    firsts = [ordered_names().index(names[0]) for names in plan]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize(
    ("groups", "replicas", "message"),
    [
        (["catalog,basket"], {}, "unknown service 'basket'"),
        (["catalog,cart", "cart,order"], {}, "cart is already in a group"),
        (["catalog,catalog"], {}, "catalog is already in a group"),
        ([" , "], {}, "no service named"),
        (["catalog,cart"], {"cart": 2}, "cart runs in a group"),
        ([], {"basket": 2}, "unknown service 'basket'"),
    ],
)
def test_a_topology_that_cannot_be_is_refused(
    groups: list[str], replicas: dict[str, int], message: str
) -> None:
    with pytest.raises(BadTopology, match=message):
        process_plan(groups, replicas)


@pytest.mark.parametrize(
    ("without", "message"),
    [(["cart"], "the order saga needs cart"), (["basket"], "unknown service 'basket'")],
)
def test_only_an_optional_service_can_be_left_out(without: list[str], message: str) -> None:
    with pytest.raises(BadTopology, match=message):
        process_plan(without=without)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--group", "catalog,cart"], "--group need --processes"),
        (["up", "--processes", "--group", "catalog,nope"], "unknown service 'nope'"),
        (["serve", "cart", "cart"], "a service named twice"),
        (["serve", "cart", "nope"], "unknown service 'nope'"),
    ],
)
def test_bad_topology_arguments_are_clear_errors(args: list[str], message: str) -> None:
    saved = structlog.get_config()
    result = CliRunner().invoke(app, args)
    structlog.configure(**saved)  # the command set logging up onto CliRunner's closed stderr
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


def test_services_together_bind_the_ports_of_their_own_addresses() -> None:
    targets = {
        "cart": "127.0.0.1:9101",
        "catalog": "localhost:9102",
        "order": "ipv4:127.0.0.1:9103,127.0.0.1:9104",  # replicas: not one address
        "payment": "127.0.0.1:9105",
    }
    assert own_ports(["cart", "catalog", "order", "shipping"], targets) == {
        "cart": 9101,
        "catalog": 9102,
    }
