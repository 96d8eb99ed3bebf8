from broker.settings import Settings
from tests.conftest import REPO


def test_example_config_loads():
    s = Settings.load(REPO / "config" / "example.yaml")
    assert s.routes[0].topic == "alerts.quality" and s.metrics_port == 9108
