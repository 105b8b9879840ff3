"""``python -m adapters``: list the reference deployments and how to run each."""

from __future__ import annotations

from adapters import DEPLOYMENTS

for d in DEPLOYMENTS.values():
    print(f"{d.name:<11} {d.chain_id:<28} {d.about}")
print("\nrun one: python -m adapters.<name> --listen 127.0.0.1:0 --state DIR --tls-cert PEM \\")
print("           --tls-key PEM [--tls-client-ca PEM] [--witness VKEY@URL] [--descriptor-out F]")
print("a witness: python -m adapters.witness --help")
