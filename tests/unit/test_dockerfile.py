"""No Docker engine here: check what can be checked without one."""
import re

from tests.conftest import REPO


def test_dockerfile_copies_existing_paths_and_runs_the_cli():
    text = (REPO / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", text, flags=re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    assert 'ENTRYPOINT ["alert-broker"]' in text and "torch==2.13.0" in text
    assert 'alert-broker = "broker.tools.cli:main"' in (REPO / "pyproject.toml").read_text()
