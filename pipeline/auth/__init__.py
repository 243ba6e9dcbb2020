"""Who may talk to whom: CurveZMQ key files and authenticated sockets."""

from pipeline.auth.curve import ZAP_DOMAIN, CurveServer, ServerKeys, secure_client
from pipeline.auth.keys import (
    OWN_KEY_NAME,
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    KeyPair,
    authorized_keys,
    check_key_name,
    ensure_own_key_pair,
    ensure_private_dir,
    generate_key_pair,
    key_paths,
    load_key_pair,
    load_public_key,
    own_key_pair,
    private_dir,
)

__all__ = ["OWN_KEY_NAME", "PUBLIC_SUFFIX", "SECRET_SUFFIX", "ZAP_DOMAIN", "CurveServer", "KeyPair", "ServerKeys",
           "authorized_keys", "check_key_name", "ensure_own_key_pair", "ensure_private_dir", "generate_key_pair",
           "key_paths", "load_key_pair", "load_public_key", "own_key_pair", "private_dir", "secure_client"]
