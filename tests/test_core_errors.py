"""The error hierarchy's defaults: a subclass with an error code reports it as its reason."""

from __future__ import annotations

import pytest

from dpop_middleware.core import errors


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (errors.InvalidRequestError, "invalid_request"),
        (errors.InvalidDPoPProofError, "invalid_dpop_proof"),
        (errors.InvalidTokenError, "invalid_token"),
        (errors.InsufficientUserAuthenticationError, "insufficient_user_authentication"),
        # An explicit reason wins over the code.
        (errors.AuthenticationRequired, "missing_credentials"),
        (errors.ServiceUnavailableError, "service_unavailable"),
        (errors.ReplayStoreUnavailable, "replay_store_unavailable"),
    ],
)
def test_default_reason(cls: type[errors.DPoPError], reason: str) -> None:
    assert cls().reason == reason


def test_scoped_errors_default_to_their_code_and_keep_an_own_reason() -> None:
    assert errors.InsufficientScopeError(("read",)).reason == "insufficient_scope"
    assert errors.UseDPoPNonceError("n").reason == "nonce_required"


def test_a_user_subclass_with_a_code_reports_it_and_one_without_inherits() -> None:
    class Custom(errors.InvalidTokenError):
        error = "custom_code"

    class Plain(errors.InvalidTokenError):
        default_description = "plain"

    assert Custom().reason == "custom_code"
    assert Plain().reason == "invalid_token"
