"""What every test of an error answer checks: RFC 9457 problem details, of the expected type."""

import requests

# The prefix of the service's own problem types (problem_details.PROBLEM_TYPE_BASE).
OURS = "https://trading-orders.invalid/problems/"


def assert_problem(answer: requests.Response, status: int, problem_type: str) -> dict[str, object]:
    """Assert ``answer`` is a problem of ``problem_type`` with ``status``; its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json", answer.headers
    body: dict[str, object] = answer.json()
    assert body["type"] == problem_type, body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body
