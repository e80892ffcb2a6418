"""Python producer SDK for actlog: signs events as DSSE v1 envelopes with
ed25519, batches them, spools them durably and sends them to
`POST /v1/events` with retries.

    from actlog_client import Client
    c = Client("http://127.0.0.1:7340", token=TOKEN, key=SEED, key_name="pdp-a-key", spool_dir="/var/lib/gw/spool")
    receipt = c.record(event).result()
"""
from .client import Client, Handle, Receipt
from .errors import ActlogError, ClientClosed, ItemError, ServerError, SpoolError, Unavailable
from .signing import PAYLOAD_TYPE, Signer, key_fingerprint, pae, public_key_b64, public_key_bytes

__version__ = "0.1.0"

__all__ = [
    "Client", "Handle", "Receipt", "Signer",
    "ActlogError", "ServerError", "Unavailable", "SpoolError", "ClientClosed", "ItemError",
    "PAYLOAD_TYPE", "pae", "public_key_b64", "public_key_bytes", "key_fingerprint",
]
