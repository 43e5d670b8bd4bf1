"""The service's bare address sends a person to the desk, with or without an API key."""

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC"]}}


@pytest.mark.parametrize("settings", [{}, {"api_key": "front-door-key"}], ids=["no key", "api key"])
def test_the_bare_address_redirects_to_the_desk(service_factory: ServiceFactory, settings: dict[str, str]) -> None:
    with service_factory(PROFILE, **settings) as service:
        answer = requests.get(f"{service.base_url}/", allow_redirects=False, timeout=5)
        assert (answer.status_code, answer.headers["location"]) == (307, "/desk")
        followed = requests.get(f"{service.base_url}/", timeout=5)
        assert followed.status_code == 200
        assert followed.url == f"{service.base_url}/desk"
        assert followed.headers["content-type"].startswith("text/html")
