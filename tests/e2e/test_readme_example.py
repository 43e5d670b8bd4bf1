"""The README's worked example, run as the README says: `make example`, its four orders, its printed answers."""

import json
import re
import subprocess
import sys

import pytest
import requests

from tests.e2e.conftest import ROOT, ServiceFactory

README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"

# A fenced block the README marks for this test: <!-- readme-example: NAME --> then ```lang ... ```.
MARKED_BLOCK = re.compile(r"<!-- readme-example: (?P<name>[^>]+?) -->\n```[\w-]*\n(?P<body>.*?)^```", re.M | re.S)


def readme_blocks() -> dict[str, str]:
    blocks = {match["name"]: match["body"] for match in MARKED_BLOCK.finditer(README.read_text())}
    assert {"orders", "answers scope=strategy", "answers scope=user"} <= set(blocks), sorted(blocks)
    return blocks


def readme_orders() -> tuple[str, list[str], str]:
    """The curl URL, the four order bodies exactly as the README sends them, and its printing one-liner."""
    block = readme_blocks()["orders"]
    urls = re.findall(r"curl -s -X POST (\S+) -H 'Content-Type: application/json' -d \"\$1\"", block)
    bodies = re.findall(r"^order '(.*)'$", block, re.M)
    printers = re.findall(r"python3 -c '(.*)'$", block, re.M)
    assert len(urls) == 1 and len(printers) == 1 and len(bodies) == 4, block
    return urls[0], bodies, printers[0]


def make_example_settings() -> dict[str, str]:
    """The TRADING_ORDERS_* settings `make example` serves with, read from the Makefile's recipe."""
    makefile = MAKEFILE.read_text()
    recipe = re.search(r"^example:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None, "the Makefile has no example target"
    command = recipe[1].replace("\\\n", " ")
    assert "-m trading_orders serve --port $(PORT) --scope $(SCOPE)" in command, command
    variables = dict(re.findall(r"^(\w+) *[:?]?= *(\S+)$", makefile, re.M))
    assert variables["PORT"] == "8080", "the README's curl orders go to port 8080"
    settings = {}
    for name, value in re.findall(r"TRADING_ORDERS_(\w+)=(\S+)", command):
        settings[name.lower()] = re.sub(r"\$\((\w+)\)", lambda v: variables[v[1]], value)
    assert set(settings) == {"profile_path", "store"}, settings
    settings["profile_path"] = str(ROOT / settings["profile_path"])
    return settings


def test_the_readme_serves_the_briefs_profile() -> None:
    settings = make_example_settings()
    assert settings["store"] == "memory", "every start of the example must be empty"
    profile = json.loads((ROOT / "Jsons/worked_example_profile.json").read_text())
    assert profile == {
        "Holland Proctor": {"STRATEGY_A": ["BIRLASOFT", "GRASIM", "EICHER"], "STRATEGY_B": ["MINDA"]},
        "Oaklee Wagner": {"STRATEGY_D": ["ACC"]},
    }
    assert settings["profile_path"] == str(ROOT / "Jsons/worked_example_profile.json")


@pytest.mark.parametrize("scope", ["strategy", "user"])
def test_the_readme_example_prints_what_the_readme_shows(service_factory: ServiceFactory, scope: str) -> None:
    url, bodies, printer = readme_orders()
    assert url == "http://127.0.0.1:8080/create_order"
    shown = readme_blocks()[f"answers scope={scope}"]
    service = service_factory(entry="serve", position_scope=scope, **make_example_settings())
    printed = []
    with service:
        for body in bodies:
            answer = requests.post(
                f"{service.base_url}/create_order",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
                timeout=5,
            )
            assert answer.status_code == 200, answer.text
            output = subprocess.run(
                [sys.executable, "-c", printer], input=answer.text, capture_output=True, text=True, check=True
            )
            printed.append(output.stdout)
    assert "".join(printed) == shown
