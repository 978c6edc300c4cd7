"""Who may change what the server serves: the repository's `load` and `unload` endpoints
require `Authorization: Bearer <token>` when the server has a control token.

The token comes from a file (`--token-file`, e.g. a mounted Kubernetes Secret) or from the
MLPIPE_SERVING_TOKEN environment variable (a Secret exposed as one), read once at start.
Without either the control plane is open, as on a loopback-only development server; the
server says so in its log when it starts.
"""

import hmac
from collections.abc import Mapping
from pathlib import Path

TOKEN_ENV = "MLPIPE_SERVING_TOKEN"
SCHEME = b"bearer "
CHALLENGE = (b"www-authenticate", b'Bearer realm="mlpipe-serving"')


class TokenError(Exception):
    """The control token cannot be read or is empty; the message says where from."""


class Unauthorized(Exception):
    """No bearer token with a request that needs one (401)."""


class Forbidden(Exception):
    """A bearer token that is not the server's (403)."""


def read_token(token_file: str | None, environ: Mapping[str, str]) -> bytes | None:
    """The control token, or None if none is configured."""
    from_env = environ.get(TOKEN_ENV)
    if token_file is not None and from_env is not None:
        raise TokenError(f"give the control token by --token-file or by {TOKEN_ENV}, not both")
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise TokenError(f"cannot read the control token file {token_file}: {error}") from None
        where = token_file
    elif from_env is not None:
        token, where = from_env.strip(), TOKEN_ENV
    else:
        return None
    if not token:
        raise TokenError(f"the control token in {where} is empty")
    return token.encode()


def check_bearer(token: bytes | None, authorization: bytes | None, action: str) -> None:
    """Pass if the server has no token or the request carries it; else raise."""
    if token is None:
        return
    if authorization is None or authorization[: len(SCHEME)].lower() != SCHEME:
        raise Unauthorized(f"{action} needs the control token: Authorization: Bearer <token>")
    # Constant time: the comparison must not tell an attacker how much of a guess was right.
    if not hmac.compare_digest(authorization[len(SCHEME) :].strip(), token):
        raise Forbidden(f"{action}: the bearer token is not this server's control token")
