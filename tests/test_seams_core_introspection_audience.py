"""Issue 19 §1.11: IntrospectionValidator checks the audience unless told, in so many words, not to.

An active token meant for another API of the same authorization server must not pass here just
because nobody configured an audience: ``audience=`` is required, or ``verify_audience=False``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dpop_middleware import InvalidTokenError
from dpop_middleware.tokens import IntrospectionValidator

ENDPOINT = "https://as.test/introspect"
API = "https://api.example.com"


def _validator(answer: dict[str, Any], **options: Any) -> IntrospectionValidator:
    body = json.dumps(answer).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    return IntrospectionValidator(
        endpoint=ENDPOINT, client_id="rs", client_secret="s3cret", http_client=httpx.Client(transport=transport),
        **options,
    )  # fmt: skip


def test_introspection_validator_without_audience_is_a_configuration_error() -> None:
    with pytest.raises(TypeError, match=r"audience=.*verify_audience=False"):
        IntrospectionValidator(endpoint=ENDPOINT, client_id="rs", client_secret="s3cret")
    with pytest.raises(TypeError, match=r"audience=.*verify_audience=False"):
        IntrospectionValidator(endpoint=ENDPOINT, client_id="rs", client_secret="s3cret", audience=[])


def test_introspection_validator_refuses_audience_together_with_the_opt_out() -> None:
    with pytest.raises(ValueError, match="verify_audience=False"):
        IntrospectionValidator(endpoint=ENDPOINT, client_id="rs", client_secret="s3cret", audience=API,
                               verify_audience=False)  # fmt: skip


@pytest.mark.parametrize("aud", ["https://other.api", None, ["https://other.api"]], ids=["other", "absent", "list"])
def test_introspection_with_audience_refuses_a_token_for_another_audience(aud: Any) -> None:
    answer = {"active": True, "sub": "alice", **({"aud": aud} if aud is not None else {})}
    with pytest.raises(InvalidTokenError) as info:
        _validator(answer, audience=API).validate("token-a")
    assert info.value.reason == "token_wrong_audience"
    assert _validator({**answer, "aud": API}, audience=API).validate("token-b")["sub"] == "alice"


def test_introspection_with_explicit_opt_out_accepts_any_audience() -> None:
    claims = _validator({"active": True, "aud": "https://other.api"}, verify_audience=False).validate("token-c")
    assert claims["aud"] == "https://other.api"
