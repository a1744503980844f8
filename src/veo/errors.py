"""Errors of the service.

    VeoError(code, message, retryable)
    ├── ConfigError          bad environment; the process exits naming the variable
    ├── InvalidRequest       a client sent something we refuse (4xx)
    │   ├── NotFound
    │   ├── Conflict
    │   └── Forbidden / Unauthorized
    ├── CryptoError          a ciphertext failed authentication or has an unknown version
    ├── KeyProblem           a Gemini key answered 429 (cooling) or was rejected (invalid)
    ├── AllKeysCooling       the owner has keys but every one is cooling: pause the job
    ├── LoginRequired        Flow showed a sign-in page: pause the account's work
    ├── AccountCooling       Flow answered rate limit / unusual activity: cool the account down
    └── GenerationFailed     a clip could not be made; ``retryable`` says whether to try again
        └── ModelRetired     Google no longer serves the model (404): permanent, no key to blame

Adapters translate foreign errors (botocore, google-genai, Playwright) into these at the edge.
"""

from __future__ import annotations

from typing import Any


class VeoError(Exception):
    code = "error"
    status = 500
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message,
                               "retryable": self.retryable}
        if self.details is not None:
            out["details"] = self.details
        return out


class ConfigError(VeoError):
    code = "config_error"


class InvalidRequest(VeoError):
    code = "invalid_request"
    status = 422


class BadRequest(InvalidRequest):
    code = "bad_request"
    status = 400


class Unauthorized(InvalidRequest):
    code = "unauthorized"
    status = 401


class Forbidden(InvalidRequest):
    code = "forbidden"
    status = 403


class NotFound(InvalidRequest):
    code = "not_found"
    status = 404


class Conflict(InvalidRequest):
    code = "conflict"
    status = 409


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"
    status = 415


class CryptoError(VeoError):
    code = "crypto_error"


class KeyProblem(VeoError):
    """A Gemini key could not be used: ``invalid`` retires it, otherwise it cools down."""

    code = "key_problem"
    retryable = True

    def __init__(self, message: str, *, invalid: bool, details: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code="key_invalid" if invalid else "key_rate_limited",
                         details=details)
        self.invalid = invalid
        self.retry_after = retry_after  # seconds the API asked us to wait (RetryInfo)


class AllKeysCooling(VeoError):
    code = "api_keys_exhausted"
    retryable = True

    def __init__(self, message: str, *, until: float | None = None) -> None:
        super().__init__(message)
        self.until = until


class NoUsableKey(VeoError):
    code = "no_api_key"


class LoginRequired(VeoError):
    code = "flow_needs_auth"
    retryable = True


class AccountCooling(VeoError):
    """Flow said slow down (rate limit, unusual activity): the account rests, its jobs pause."""

    code = "flow_rate_limited"
    retryable = True

    def __init__(self, message: str, *, kind: str, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.kind = kind  # rate_limited | unusual_activity


class GenerationFailed(VeoError):
    code = "generation_failed"


class ModelRetired(GenerationFailed):
    """Google answered 404 for the model itself: it was shut down. Permanent, so never retried
    and no key is blamed; ``replacement`` is the model Google's text names, when it names one."""

    code = "model_retired"
    retryable = False

    def __init__(self, message: str, *, model: str | None = None,
                 replacement: str | None = None) -> None:
        super().__init__(message, details={"model": model, "replacement": replacement})
        self.model = model
        self.replacement = replacement
