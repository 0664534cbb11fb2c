"""The kill -9 drill per platform (drills.py), run by `--follow` and by the Python API, and once
against the broken variant (acknowledge before the commit) to show the drill reports the loss.

Sizes: ``DP_DRILL_EVENTS`` (default 300) readings, ``DP_DRILL_KILLS`` (default 5) kills.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.integration.drills import (
    Drill,
    KafkaPlatform,
    MqttPlatform,
    NatsPlatform,
    Platform,
    RabbitPlatform,
    RedisPlatform,
)
from tests.integration.kafka_broker import tansu_broker

pytestmark = pytest.mark.service

SERVICES = {"redis": 6379, "nats": 4222, "rabbitmq": 5672, "mqtt": 1883}


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("confluent_kafka")
    with tansu_broker(tmp_path_factory.mktemp("tansu")) as address:
        yield address


def make_platform(name: str, folder: Path, request: pytest.FixtureRequest) -> Platform:
    if name in SERVICES:
        require_service(name, "127.0.0.1", SERVICES[name])
    if name == "redis":
        return RedisPlatform()
    if name == "nats":
        return NatsPlatform()
    if name == "rabbitmq":
        return RabbitPlatform()
    if name == "mqtt":
        pytest.importorskip("paho.mqtt")
        return MqttPlatform(folder)
    return KafkaPlatform(request.getfixturevalue("kafka"))


PLATFORMS = ["redis", "nats", "kafka", "rabbitmq", "mqtt"]


@pytest.mark.parametrize("mode", ["follow", "python"])
@pytest.mark.parametrize("name", PLATFORMS)
def test_kill_9_loses_nothing_and_doubles_nothing(
    name: str, mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    platform = make_platform(name, tmp_path, request)
    try:
        report = Drill(platform, tmp_path, mode).run()
    finally:
        platform.close()
    print(report)
    assert report.exact, str(report)
    assert report.stored == report.produced


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_drill_reports_the_loss_of_ack_before_commit(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The broken variant: each read is acknowledged at once and the position comes from the
    broker. The process killed between a read and its commit loses that batch, and the drill
    says so."""
    platform = make_platform(name, tmp_path, request)
    try:
        report = Drill(platform, tmp_path, "follow", broken=True).run()
    finally:
        platform.close()
    print(report)
    assert not report.exact
    assert report.lost, str(report)
